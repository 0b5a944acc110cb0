import pytest

from sipedge.sip.registrar import Registrar

SOURCE = ("192.0.2.10", 5060)


def register(registrar, contacts, *, expires=None, call_id="c1", cseq=1, now=0.0,
             user="12345101"):
    return registrar.update(user, contacts, expires_header=expires, call_id=call_id, cseq=cseq,
                            now=now, source=SOURCE, transport="udp", user_agent="phone")


def test_register_binds_with_the_expires_header():
    registrar = Registrar()
    result = register(registrar, [("sip:a@192.0.2.10", None)], expires=300)
    assert result.status == 200
    [binding] = registrar.bindings("12345101", now=1)
    assert binding.expires_in(100) == 200


def test_contact_expires_parameter_wins_over_the_header():
    registrar = Registrar()
    register(registrar, [("sip:a@x", 120), ("sip:b@x", None)], expires=600)
    expiries = {b.contact: b.expires_in(0) for b in registrar.bindings("12345101", 0)}
    assert expiries == {"sip:a@x": 120, "sip:b@x": 600}


def test_too_brief_is_423_with_min_expires():
    registrar = Registrar(min_expires=60)
    result = register(registrar, [("sip:a@x", 30)])
    assert (result.status, result.min_expires) == (423, 60)
    assert registrar.bindings("12345101", 0) == []


def test_expiry_is_capped_at_the_maximum():
    registrar = Registrar(max_expires=3600)
    register(registrar, [("sip:a@x", 86400)])
    assert registrar.bindings("12345101", 0)[0].expires_in(0) == 3600


def test_refresh_replaces_and_zero_removes():
    registrar = Registrar()
    register(registrar, [("sip:a@x", 300)], cseq=1)
    refreshed = register(registrar, [("sip:a@x", 600)], cseq=2, now=100)
    assert len(refreshed.bindings) == 1 and refreshed.bindings[0].expires_at == 700
    removed = register(registrar, [("sip:a@x", 0)], cseq=3, now=200)
    assert [b.contact for b in removed.removed] == ["sip:a@x"]
    assert registrar.bindings("12345101", 200) == []


def test_an_old_cseq_of_the_same_call_id_fails():
    registrar = Registrar()
    register(registrar, [("sip:a@x", 300)], cseq=5)
    assert register(registrar, [("sip:a@x", 300)], cseq=5).status == 500
    assert register(registrar, [("sip:a@x", 300)], cseq=1, call_id="other").status == 200


def test_star_with_expires_zero_removes_every_binding():
    registrar = Registrar()
    register(registrar, [("sip:a@x", 300), ("sip:b@x", 300)])
    result = register(registrar, "*", expires=0, cseq=2)
    assert result.status == 200 and len(result.removed) == 2
    assert registrar.bindings("12345101", 0) == []


@pytest.mark.parametrize("expires", [None, 300])
def test_star_without_expires_zero_is_400(expires):
    assert register(Registrar(), "*", expires=expires).status == 400


def test_home_and_remote_are_separate_records():
    registrar = Registrar()
    register(registrar, [("sip:desk@x", 300)], user="12345101")
    register(registrar, [("sip:soft@x", 300)], user="12345101r")
    assert len(registrar.remove_user("12345101r")) == 1
    assert [b.contact for b in registrar.bindings("12345101", 0)] == ["sip:desk@x"]


def test_expire_removes_bindings_on_time_and_refreshes_move_the_timer():
    registrar = Registrar()
    register(registrar, [("sip:a@x", 100), ("sip:b@x", 200)])
    register(registrar, [("sip:a@x", 300)], cseq=2, now=50)  # a now ends at 350
    assert registrar.next_expiry() == 200
    assert registrar.expire(199) == []
    assert [b.contact for b in registrar.expire(200)] == ["sip:b@x"]
    assert registrar.next_expiry() == 350
    assert [b.contact for b in registrar.expire(1000)] == ["sip:a@x"]
    assert registrar.next_expiry() is None and len(registrar) == 0


def test_too_many_contacts_are_refused():
    registrar = Registrar(max_bindings=2)
    result = register(registrar, [(f"sip:{i}@x", 300) for i in range(3)])
    assert result.status == 403 and len(registrar) == 0


def test_refreshes_leave_no_timers_behind_after_compaction():
    registrar = Registrar()
    for i in range(500):
        register(registrar, [("sip:a@x", 300)], cseq=i + 1, now=float(i))
    assert len(registrar._timers) == 500
    registrar.compact()
    assert len(registrar._timers) == 1
    assert registrar.next_expiry() == 499.0 + 300
