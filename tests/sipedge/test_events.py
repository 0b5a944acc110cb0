"""The edge's event queue: bounded, coalescing what only states the present."""

from sipedge.events import EventQueue


def reg(user, contact, expires=300, kind="registration"):
    return {"type": kind, "user_id": user, "contact": contact, "expires": expires}


def success(address, user):
    return {"type": "auth_success", "address": address, "user_id": user}


def failure(address, user):
    return {"type": "auth_failure", "address": address, "user_id": user,
            "reason": "wrong_password"}


def test_a_binding_registered_again_before_it_is_sent_is_one_event_the_latest():
    queue = EventQueue()
    for expires in (300, 200, 100):
        queue.append(reg("12345101", "sip:a@192.0.2.1", expires))
    queue.append(reg("12345102", "sip:b@192.0.2.1"))
    assert len(queue) == 2 and queue.coalesced == 2
    assert queue.drain(10) == [reg("12345101", "sip:a@192.0.2.1", 100),
                               reg("12345102", "sip:b@192.0.2.1")]
    assert len(queue) == 0 and not queue


def test_an_unregistration_replaces_the_registration_of_that_binding():
    queue = EventQueue()
    queue.append(reg("12345101", "sip:a@192.0.2.1"))
    queue.append(reg("12345101", "sip:a@192.0.2.1", kind="unregistration"))
    assert queue.drain(10) == [reg("12345101", "sip:a@192.0.2.1", kind="unregistration")]


def test_an_unregistration_of_every_binding_is_kept_in_its_place():
    queue = EventQueue()
    everything = {"type": "unregistration", "user_id": "12345101"}
    queue.append(reg("12345101", "sip:a@192.0.2.1"))
    queue.append(everything)
    queue.append(reg("12345101", "sip:a@192.0.2.1", 60))
    assert queue.drain(10) == [everything, reg("12345101", "sip:a@192.0.2.1", 60)]


def test_an_event_already_taken_is_not_replaced():
    queue = EventQueue()
    queue.append(reg("12345101", "sip:a@192.0.2.1", 300))
    taken = queue.drain(10)
    queue.append(reg("12345101", "sip:a@192.0.2.1", 200))
    assert taken == [reg("12345101", "sip:a@192.0.2.1", 300)]  # untouched: it may be resent
    assert queue.drain(10) == [reg("12345101", "sip:a@192.0.2.1", 200)]


def test_failures_are_never_coalesced_nor_is_a_success_moved_across_one():
    queue = EventQueue()
    pair = ("203.0.113.5", "12345101")
    for event in (failure(*pair), failure(*pair), success(*pair), failure(*pair),
                  success(*pair), success(*pair)):
        queue.append(event)
    # The first success must stay between the failures it forgave and the next one; the
    # last two successes are one.
    assert [e["type"] for e in queue.drain(10)] == [
        "auth_failure", "auth_failure", "auth_success", "auth_failure", "auth_success"]


def test_successes_of_other_pairs_are_separate():
    queue = EventQueue()
    queue.append(success("203.0.113.5", "12345101"))
    queue.append(success("203.0.113.5", "12345102"))
    queue.append(success("203.0.113.6", "12345101"))
    assert len(queue.drain(10)) == 3


def test_the_bound_drops_the_oldest_live_events_and_counts_them():
    queue = EventQueue(max_events=3)
    queue.append(reg("1", "sip:a@h"))
    queue.append(reg("1", "sip:a@h", 60))  # replaces: one live event, one hole
    for n in range(2, 6):
        queue.append(failure("203.0.113.5", str(n)))
    assert len(queue) == 3 and queue.dropped == 2
    assert [e["user_id"] for e in queue.drain(10)] == ["3", "4", "5"]


def test_a_dropped_event_is_no_longer_replaced():
    queue = EventQueue(max_events=1)
    queue.append(reg("1", "sip:a@h"))
    queue.append(failure("203.0.113.5", "2"))  # drops the registration
    queue.append(reg("1", "sip:a@h", 60))  # a new event, not a replacement of the lost one
    assert queue.dropped == 2 and queue.coalesced == 0
    assert queue.drain(10) == [reg("1", "sip:a@h", 60)]


def test_many_replacements_are_compacted_and_order_is_kept():
    queue = EventQueue()
    for round_ in range(5):
        for n in range(1000):
            queue.append(reg(str(n), "sip:a@h", round_))
    assert len(queue) == 1000
    assert len(queue._queue) < 3000  # holes were compacted away
    drained = queue.drain(5000)
    assert [e["user_id"] for e in drained] == [str(n) for n in range(1000)]
    assert all(e["expires"] == 4 for e in drained)
