"""RFC 4475 torture test messages against the parser.

The messages are transcribed from RFC 4475 §3.1.1 (valid), §3.1.2 (invalid) and §3.2.1
(badbranch). The RFC writes non-printable octets as <hex>..</hex> and long runs as
<repeat>: here they are \\x escapes, ``bytes.fromhex`` and ``*`` on bytes, the octets on the
wire staying the same.

For an invalid message the behaviour asserted is what a registrar needs, per case:

* REFUSED: ``parse_message`` raises ParseError (the edge answers 400 from the error's
  headers, or drops a response), where RFC 4475 says the element "should respond with
  400" or that rejecting "is acceptable";
* ACCEPTED: the message parses, and the offending value fails its own value parser (or is
  a value the registrar never reads), where RFC 4475 lets the element be liberal.
"""

import pytest

from sipedge.sip.message import (
    ParseError,
    Request,
    Response,
    StreamFramer,
    make_response,
    parse_contact,
    parse_cseq,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
    unescape,
)


def sdp(origin, connection=None, t=b"0 0"):
    connection = connection or origin
    return (
        b"v=0\r\n"
        b"o=mhandley 29739 7272939 IN IP4 " + origin + b"\r\n"
        b"s=-\r\n"
        b"c=IN IP4 " + connection + b"\r\n"
        b"t=" + t + b"\r\n"
        b"m=audio 49217 RTP/AVP 0 12\r\n"
        b"m=video 3227 RTP/AVP 31\r\n"
        b"a=rtpmap:31 LPC\r\n"
    )


# --- RFC 4475 §3.1.1 Valid Messages ------------------------------------------------------

# §3.1.1.1 A Short Tortuous INVITE
WSINV = (
    b"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\n"
    b"TO :\r\n"
    b" sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\n"
    b'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>\r\n'
    b"  ;\r\n"
    b"  tag = 98asjd8\r\n"
    b"MaX-fOrWaRdS: 0068\r\n"
    b"Call-ID: wsinv.ndaksdj@192.0.2.1\r\n"
    b"Content-Length   : 150\r\n"
    b"cseq: 0009\r\n"
    b"  INVITE\r\n"
    b"Via  : SIP  /   2.0\r\n"
    b" /UDP\r\n"
    b"    192.0.2.2;branch=390skdjuw\r\n"
    b"s :\r\n"
    b"NewFangledHeader:   newfangled value\r\n"
    b" continued newfangled value\r\n"
    b"UnknownHeaderWithUnusualValue: ;;,,;;,;\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Route:\r\n"
    b" <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\r\n"
    b"v:  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n"
    b"  branch  =   z9hG4bK9ikj8  ,\r\n"
    b" SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n"
    b" z9hG4bK30239\r\n"
    b'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =\r\n'
    b"      newvalue ;\r\n"
    b"  secondparam ; q = 0.33\r\n"
    b"\r\n" + sdp(b"192.0.2.3", b"192.0.2.4")
)

# §3.1.1.2 Wide Range of Valid Characters
INTMETH = (
    b"!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/"
    b"crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~\r\n"
    b'To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:1_unusual.URI~(to-be!sure)&isn\'t+it$/crazy?,/;;*'
    b"@example.com>\r\n"
    b"From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%="
    b'"\xd1\x80\xd0\xb0\xd0\xb1\xd0\xbe\xd1\x82\xd0\xb0\xd1\x8e\xd1\x89\xd0\xb8\xd0\xb9"'
    b";tag=_token~1'+`*%!-.\r\n"
    b"Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{\r\n"
    b"CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~\r\n"
    b"Max-Forwards: 255\r\n"
    b"extensionHeader-!.%*+_`'~:\xef\xbb\xbf\xe5\xa4\xa7\xe5\x81\x9c\xe9\x9b\xbb\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# §3.1.1.3 Valid Use of the % Escaping Mechanism
ESC01 = (
    b"INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0\r\n"
    b"To: sip:%75se%72@example.com\r\n"
    b"From: <sip:I%20have%20spaces@example.net>;tag=938\r\n"
    b"Max-Forwards: 87\r\n"
    b"i: esc01.239409asdfakjkn23onasd0-3234\r\n"
    b"CSeq: 234234 INVITE\r\n"
    b"Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw\r\n"
    b"C: application/sdp\r\n"
    b"Contact:\r\n"
    b"  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>\r\n"
    b"Content-Length: 150\r\n"
    b"\r\n" + sdp(b"192.0.2.1")
)

# §3.1.1.4 Escaped Nulls in URIs
ESCNULL = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"To: sip:null-%00-null@example.com\r\n"
    b"From: sip:null-%00-null@example.com;tag=839923423\r\n"
    b"Max-Forwards: 70\r\n"
    b"Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd\r\n"
    b"CSeq: 14398234 REGISTER\r\n"
    b"Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\r\n"
    b"Contact: <sip:%00@host5.example.com>\r\n"
    b"Contact: <sip:%00%00@host5.example.com>\r\n"
    b"L:0\r\n"
    b"\r\n"
)

# §3.1.1.5 Use of % When It Is Not an Escape
ESC02 = (
    b"RE%47IST%45R sip:registrar.example.com SIP/2.0\r\n"
    b'To: "%Z%45" <sip:resource@example.com>\r\n'
    b'From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23\r\n'
    b"Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf\r\n"
    b"Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234\r\n"
    b"CSeq: 29344 RE%47IST%45R\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:alias1@host1.example.com>\r\n"
    b"C%6Fntact: <sip:alias2@host2.example.com>\r\n"
    b"Contact: <sip:alias3@host3.example.com>\r\n"
    b"l: 0\r\n"
    b"\r\n"
)

# §3.1.1.6 Message with No LWS between Display Name and <
LWSDISP = (
    b"OPTIONS sip:user@example.com SIP/2.0\r\n"
    b"To: sip:user@example.com\r\n"
    b"From: caller<sip:caller@example.com>;tag=323\r\n"
    b"Max-Forwards: 70\r\n"
    b"Call-ID: lwsdisp.1234abcd@funky.example.com\r\n"
    b"CSeq: 60 OPTIONS\r\n"
    b"Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw\r\n"
    b"l: 0\r\n"
    b"\r\n"
)

# §3.1.1.7 Long Values in Header Fields (the RFC's <repeat> runs written as bytes * n)
LONG_CALLER = b"amazinglylongcallername" * 5
LONGREQ = (
    b"INVITE sip:user@example.com SIP/2.0\r\n"
    b'To: "I have a user name of ' + b"extreme" * 10 + b' proportion"<sip:user@example.com:6000;'
    b"unknownparam1=very" + b"long" * 20 + b"value;"
    b"longparam" + b"name" * 25 + b"=shortvalue;"
    b"very" + b"long" * 25 + b"ParameterNameWithNoValue>\r\n"
    b"F: sip:" + LONG_CALLER + b"@example.net;tag=12" + b"982" * 50 + b"424;"
    b"unknownheaderparam" + b"name" * 20 + b"=unknowheaderparam" + b"value" * 15 + b";"
    b"unknownValueless" + b"paramname" * 10 + b"\r\n"
    b"Call-ID: longreq.one" + b"really" * 20 + b"longcallid\r\n"
    b"CSeq: 3882340 INVITE\r\n"
    b"Unknown-" + b"Long" * 20 + b"-Name: unknown-" + b"long" * 20 + b"-value; "
    b"unknown-" + b"long" * 20 + b"-parameter-name = unknown-" + b"long" * 20 + b"-parameter-value\r\n"
    b"Via: SIP/2.0/TCP sip33.example.com\r\n"
    b"v: SIP/2.0/TCP sip32.example.com\r\n"
    b"V: SIP/2.0/TCP sip31.example.com\r\n"
    b"Via: SIP/2.0/TCP sip30.example.com\r\n"
    b"ViA: SIP/2.0/TCP sip29.example.com\r\n"
    b"VIa: SIP/2.0/TCP sip28.example.com\r\n"
    b"VIA: SIP/2.0/TCP sip27.example.com\r\n"
    b"via: SIP/2.0/TCP sip26.example.com\r\n"
    b"viA: SIP/2.0/TCP sip25.example.com\r\n"
    b"vIa: SIP/2.0/TCP sip24.example.com\r\n"
    b"vIA: SIP/2.0/TCP sip23.example.com\r\n"
    b"V :  SIP/2.0/TCP sip22.example.com\r\n"
    b"v :  SIP/2.0/TCP sip21.example.com\r\n"
    b"V  : SIP/2.0/TCP sip20.example.com\r\n"
    b"v  : SIP/2.0/TCP sip19.example.com\r\n"
    b"Via : SIP/2.0/TCP sip18.example.com\r\n"
    b"Via  : SIP/2.0/TCP sip17.example.com\r\n"
    + b"".join(b"Via: SIP/2.0/TCP sip%d.example.com\r\n" % n for n in range(16, 0, -1))
    + b"Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch=very"
    + b"long" * 50
    + b"branchvalue\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:" + LONG_CALLER + b"@host5.example.net>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"l: 150\r\n"
    b"\r\n" + sdp(b"192.0.2.1")
)

# §3.1.1.8 Extra Trailing Octets in a UDP Datagram
DBLREQ = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"To: sip:j.user@example.com\r\n"
    b"From: sip:j.user@example.com;tag=43251j3j324\r\n"
    b"Max-Forwards: 8\r\n"
    b"I: dblreq.0ha0isndaksdj99sdfafnl3lk233412\r\n"
    b"Contact: sip:j.user@host.example.com\r\n"
    b"CSeq: 8 REGISTER\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
    b"INVITE sip:joe@example.com SIP/2.0\r\n"
    b"t: sip:joe@example.com\r\n"
    b"From: sip:caller@example.net;tag=141334\r\n"
    b"Max-Forwards: 8\r\n"
    b"Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15\r\n"
    b"CSeq: 8 INVITE\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 150\r\n"
    b"\r\n"
    b"v=0\r\n"
    b"o=mhandley 29739 7272939 IN IP4 192.0.2.15\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.15\r\n"
    b"t=0 0\r\n"
    b"m=audio 49217 RTP/AVP 0 12\r\n"
    b"m =video 3227 RTP/AVP 31\r\n"
    b"a=rtpmap:31 LPC\r\n"
)

# §3.1.1.9 Semicolon-Separated Parameters in URI User Part
SEMIURI = (
    b"OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0\r\n"
    b"To: sip:j_user@example.com\r\n"
    b"From: sip:caller@example.org;tag=33242\r\n"
    b"Max-Forwards: 3\r\n"
    b"Call-ID: semiuri.0ha0isndaksdj\r\n"
    b"CSeq: 8 OPTIONS\r\n"
    b"Accept: application/sdp, application/pkcs7-mime,\r\n"
    b"        multipart/mixed, multipart/signed,\r\n"
    b"        message/sip, message/sipfrag\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw\r\n"
    b"l: 0\r\n"
    b"\r\n"
)

# §3.1.1.10 Varied and Unknown Transport Types
TRANSPORTS = (
    b"OPTIONS sip:user@example.com SIP/2.0\r\n"
    b"To: sip:user@example.com\r\n"
    b"From: <sip:caller@example.com>;tag=323\r\n"
    b"Max-Forwards: 70\r\n"
    b"Call-ID:  transports.kijh4akdnaqjkwendsasfdj\r\n"
    b"Accept: application/sdp\r\n"
    b"CSeq: 60 OPTIONS\r\n"
    b"Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw\r\n"
    b"Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf\r\n"
    b"Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj\r\n"
    b"Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en\r\n"
    b"Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee\r\n"
    b"l: 0\r\n"
    b"\r\n"
)

# §3.1.1.11 Multipart MIME Message: the second part is a binary S/MIME signature with NULs.
SMIME_SIGNATURE = bytes.fromhex(
    "3082015206092A864886F70D010702A08201433082013F02"
    "01013109300706052B0E03021A300B06092A864886F70D010701318201203082"
    "011C020101307C3070310B300906035504061302555331133011060355040813"
    "0A43616C69666F726E69613111300F0603550407130853616E204A6F7365310E"
    "300C060355040A1305736970697431293027060355040B132053697069742054"
    "65737420436572746966696361746520417574686F7269747902080195007102"
    "330113300706052B0E03021A300D06092A864886F70D01010105000481808EF4"
    "66F948F0522DD2E5978E9D95AAE9F2FE15A06659716292E8DA2AA8D8350A68CE"
    "FFAE3CBD2BFF1675DDD5648E593DD64728F26220F7E941749E330D9A15EDABDB"
    "93D10C42102E7B7289D29CC0C9AE2EFBC7C0CFF9172F3B027E4FC027E1546DE4"
    "B6AA3ABB3E66CCCB5DD6C64B8383149CB8E6FF182D944FE57B65BC99D005"
)
MPART01_BODY = (
    b"--7a9cbec02ceef655\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"\r\n"
    b"Hello\r\n"
    b"--7a9cbec02ceef655\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"\r\n" + SMIME_SIGNATURE + b"\r\n"
    b"--7a9cbec02ceef655--\r\n"
)
MPART01 = (
    b"MESSAGE sip:kumiko@example.org SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"Route: <sip:127.0.0.1:5080>\r\n"
    b"Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+81"
    b"3gvYjcBUaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA=\r\n"
    b"Contact: <sip:fluffy@127.0.0.1:5070>\r\n"
    b"To: <sip:kumiko@example.org>\r\n"
    b"From: <sip:fluffy@example.com>;tag=2fb0dcc9\r\n"
    b"Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..\r\n"
    b"CSeq: 1 MESSAGE\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"Content-Type: multipart/mixed;boundary=7a9cbec02ceef655\r\n"
    b"Date: Sat, 15 Oct 2005 04:44:56 GMT\r\n"
    b"User-Agent: SIPimp.org/0.2.5 (curses)\r\n"
    b"Content-Length: 553\r\n"
    b"\r\n" + MPART01_BODY
)

# §3.1.1.12 Unusual Reason Phrase ("= 2**3 * 5**2 но сто девяносто девять - простое")
UNREASON_PHRASE = "= 2**3 * 5**2 но сто девяносто девять - простое"
UNREASON = (
    b"SIP/2.0 200 = 2**3 * 5**2 \xd0\xbd\xd0\xbe \xd1\x81\xd1\x82\xd0\xbe \xd0\xb4\xd0\xb5\xd0\xb2"
    b"\xd1\x8f\xd0\xbd\xd0\xbe\xd1\x81\xd1\x82\xd0\xbe \xd0\xb4\xd0\xb5\xd0\xb2\xd1\x8f\xd1\x82\xd1\x8c"
    b" - \xd0\xbf\xd1\x80\xd0\xbe\xd1\x81\xd1\x82\xd0\xbe\xd0\xb5\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\r\n"
    b"Call-ID: unreason.1234ksdfak3j2erwedfsASdf\r\n"
    b"CSeq: 35 INVITE\r\n"
    b"From: sip:user@example.com;tag=11141343\r\n"
    b"To: sip:user@example.edu;tag=2229\r\n"
    b"Content-Length: 154\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Contact: <sip:user@host198.example.com>\r\n"
    b"\r\n" + sdp(b"192.0.2.198")
)

# §3.1.1.13 Empty Reason Phrase (note the SP after the status code)
NOREASON = (
    b"SIP/2.0 100 \r\n"
    b"Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\r\n"
    b"Call-ID: noreason.asndj203insdf99223ndf\r\n"
    b"CSeq: 35 INVITE\r\n"
    b"From: <sip:user@example.com>;tag=39ansfi3\r\n"
    b"To: <sip:user@example.edu>;tag=902jndnke3\r\n"
    b"Content-Length: 0\r\n"
    b"Contact: <sip:user@host105.example.com>\r\n"
    b"\r\n"
)

VALID = {
    "wsinv": WSINV,
    "intmeth": INTMETH,
    "esc01": ESC01,
    "escnull": ESCNULL,
    "esc02": ESC02,
    "lwsdisp": LWSDISP,
    "longreq": LONGREQ,
    "dblreq": DBLREQ,
    "semiuri": SEMIURI,
    "transports": TRANSPORTS,
    "mpart01": MPART01,
    "unreason": UNREASON,
    "noreason": NOREASON,
}


@pytest.mark.parametrize("name", VALID)
def test_parse_accepts_valid_torture_message(name):
    message = parse_message(VALID[name])

    assert isinstance(message, (Request, Response))
    assert len(message.body) == int(message.headers.get("Content-Length"))


@pytest.mark.parametrize("name", VALID)
def test_reparse_of_valid_torture_message_gives_same_value(name):
    message = parse_message(VALID[name])

    assert parse_message(message.to_bytes()) == message


def test_parse_wsinv_unfolds_and_reads_every_field():
    message = parse_message(WSINV)
    headers = message.headers

    assert message.method == "INVITE"
    assert parse_uri(message.uri).params == {"unknownparam": ""}
    to = parse_name_addr(headers.get("To"))
    assert (to.display, to.params) == ("", {"tag": "1918181833n"})
    assert str(to.uri) == "sip:vivekg@chair-dnrc.example.com"
    sender = parse_name_addr(headers.get("From"))
    assert (sender.display, sender.params) == ('J Rosenberg \\"', {"tag": "98asjd8"})
    assert headers.get("Max-Forwards") == "0068"
    assert parse_cseq(headers.get("CSeq")) == (9, "INVITE")
    vias = [parse_via(v) for v in headers.get_all("Via")]
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert headers.get("Subject") == ""
    assert headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    # Unknown header: one opaque value, commas and all (RFC 4475 §3.1.1.1).
    assert headers.get_all("UnknownHeaderWithUnusualValue") == [";;,,;;,;"]
    assert headers.get_all("Route") == ["<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"]
    contact = parse_contact(headers.get("Contact"))
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": "", "q": "0.33"}


def test_parse_intmeth_keeps_unusual_characters():
    message = parse_message(INTMETH)
    headers = message.headers

    assert message.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = parse_uri(message.uri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert parse_via(headers.get("Via")).branch == "z9hG4bK-.!%66*_+`'~"
    assert parse_name_addr(headers.get("To")).display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    sender = parse_name_addr(headers.get("From"))
    assert sender.display == "token1~` token2'+_ token3*%!.-"
    assert sender.params == {"fromparam''~+*_!.-%": '"работающий"', "tag": "_token~1'+`*%!-."}
    assert headers.get("Call-ID") == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert parse_cseq(headers.get("CSeq")) == (139122385, message.method)
    assert headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_parse_esc01_keeps_escapes_that_unescape_once():
    message = parse_message(ESC01)

    assert unescape(parse_uri(message.uri).user) == "sips:user@example.com"
    assert unescape(parse_name_addr(message.headers.get("To")).uri.user) == "user"
    assert unescape(parse_name_addr(message.headers.get("From")).uri.user) == "I have spaces"
    contact = parse_contact(message.headers.get("Contact"))
    assert unescape(contact.uri.user) == "caller"
    assert contact.uri.params == {"%6c%72": "", "n%61me": "v%61lue%25%34%31"}
    assert unescape(contact.uri.params["n%61me"]) == "value%41"


def test_parse_escnull_keeps_users_with_nulls_distinct():
    headers = parse_message(ESCNULL).headers

    assert unescape(parse_name_addr(headers.get("To")).uri.user) == "null-\x00-null"
    users = [unescape(parse_contact(c).uri.user) for c in headers.get_all("Contact")]
    assert users == ["\x00", "\x00\x00"]


def test_parse_esc02_does_not_treat_percent_as_escape_outside_uris():
    message = parse_message(ESC02)

    assert message.method == "RE%47IST%45R"
    assert parse_name_addr(message.headers.get("To")).display == "%Z%45"
    assert parse_via(message.headers.get("Via")).branch == "z9hG4bK209%fzsnel234"
    assert [parse_contact(c).uri.user for c in message.headers.get_all("Contact")] == ["alias1", "alias3"]
    assert message.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_parse_lwsdisp_accepts_display_name_touching_bracket():
    sender = parse_name_addr(parse_message(LWSDISP).headers.get("From"))

    assert (sender.display, sender.uri.user, sender.params) == ("caller", "caller", {"tag": "323"})


def test_parse_longreq_reads_long_values_and_34_vias():
    headers = parse_message(LONGREQ).headers

    to = parse_name_addr(headers.get("To"))
    assert to.uri.port == 6000
    assert to.uri.params["unknownparam1"] == "very" + "long" * 20 + "value"
    assert to.uri.params["very" + "long" * 25 + "parameternamewithnovalue"] == ""
    sender = parse_name_addr(headers.get("From"))
    assert sender.params["tag"] == "12" + "982" * 50 + "424"
    assert sender.params["unknownvaluelessparamname" + "paramname" * 9] == ""
    vias = [parse_via(v) for v in headers.get_all("Via")]
    assert [v.host for v in vias[:33]] == [f"sip{n}.example.com" for n in range(33, 0, -1)]
    assert (vias[33].received, vias[33].branch) == ("192.0.2.5", "very" + "long" * 50 + "branchvalue")


def test_parse_dblreq_ignores_octets_after_content_length():
    message = parse_message(DBLREQ)

    assert (message.method, message.body) == ("REGISTER", b"")
    assert message.headers.get("Call-ID") == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"


def test_parse_semiuri_keeps_semicolon_in_user_part():
    message = parse_message(SEMIURI)

    uri = parse_uri(message.uri)
    assert (uri.user, uri.host, uri.params) == ("user;par=u%40example.net", "example.com", {})
    assert unescape(uri.user) == "user;par=u@example.net"
    assert len(message.headers.get_all("Accept")) == 6


def test_parse_transports_reads_unknown_transport():
    headers = parse_message(TRANSPORTS).headers

    assert [parse_via(v).transport for v in headers.get_all("Via")] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert headers.get("Call-ID") == "transports.kijh4akdnaqjkwendsasfdj"


def test_parse_mpart01_frames_binary_body_by_content_length():
    message = parse_message(MPART01)

    assert message.body == MPART01_BODY
    assert b"\x00" in message.body
    via = parse_via(message.headers.get("Via"))
    assert (via.port, via.rport) == (5070, "")


def test_parse_unreason_keeps_utf8_reason_phrase():
    message = parse_message(UNREASON)

    assert (message.status, message.reason) == (200, UNREASON_PHRASE)


def test_parse_noreason_reads_empty_reason_phrase():
    message = parse_message(NOREASON)

    assert (message.status, message.reason) == (100, "")


# --- RFC 4475 §3.1.2 Invalid Messages --------------------------------------------------

# §3.1.2.1 Extraneous Header Field Separators
BADINV01 = (
    b"INVITE sip:user@example.com SIP/2.0\r\n"
    b"To: sip:j.user@example.com\r\n"
    b"From: sip:caller@example.net;tag=134161461246\r\n"
    b"Max-Forwards: 7\r\n"
    b"Call-ID: badinv01.0ha0isndaksdjasdf3234nas\r\n"
    b"CSeq: 8 INVITE\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.15;;,;,,\r\n"
    b'Contact: "Joe" <sip:joe@example.org>;;;;\r\n'
    b"Content-Length: 152\r\n"
    b"Content-Type: application/sdp\r\n"
    b"\r\n" + sdp(b"192.0.2.15")
)

# §3.1.2.2 Content Length Larger Than Message
CLERR = (
    b"INVITE sip:user@example.com SIP/2.0\r\n"
    b"Max-Forwards: 80\r\n"
    b"To: sip:j.user@example.com\r\n"
    b"From: sip:caller@example.net;tag=93942939o2\r\n"
    b"Contact: <sip:caller@hungry.example.net>\r\n"
    b"Call-ID: clerr.0ha0isndaksdjweiafasdk3\r\n"
    b"CSeq: 8 INVITE\r\n"
    b"Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 9999\r\n"
    b"\r\n" + sdp(b"192.0.2.155")
)

# §3.1.2.3 Negative Content-Length
NCL = (
    b"INVITE sip:user@example.com SIP/2.0\r\n"
    b"Max-Forwards: 254\r\n"
    b"To: sip:j.user@example.com\r\n"
    b"From: sip:caller@example.net;tag=32394234\r\n"
    b"Call-ID: ncl.0ha0isndaksdj2193423r542w35\r\n"
    b"CSeq: 0 INVITE\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw\r\n"
    b"Contact: <sip:caller@example53.example.net>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: -999\r\n"
    b"\r\n" + sdp(b"192.0.2.53")
)

# §3.1.2.4 Request Scalar Fields with Overlarge Values
SCALAR02 = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3\r\n"
    b"To: <sip:user@example.com>\r\n"
    b"From: <sip:user@example.com>;tag=239232jh3\r\n"
    b"CSeq: 36893488147419103232 REGISTER\r\n"
    b"Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32\r\n"
    b"Max-Forwards: 300\r\n"
    b"Expires: 1" + b"0" * 100 + b"\r\n"
    b"Contact: <sip:user@host129.example.com>\r\n"
    b"  ;expires=280297596632815\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# §3.1.2.5 Response Scalar Fields with Overlarge Values
SCALARLG = (
    b"SIP/2.0 503 Service Unavailable\r\n"
    b"Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129\r\n"
    b"To: <sip:user@example.com>\r\n"
    b"From: <sip:other@example.net>;tag=2easdjfejw\r\n"
    b"CSeq: 9292394834772304023312 OPTIONS\r\n"
    b"Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r\r\n"
    b"Retry-After: 949302838503028349304023988\r\n"
    b'Warning: 1812 overture "In Progress"\r\n'
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# §3.1.2.6 Unterminated Quoted String in Display Name
QUOTBAL = (
    b"INVITE sip:user@example.com SIP/2.0\r\n"
    b'To: "Mr. J. User <sip:j.user@example.com>\r\n'
    b"From: sip:caller@example.net;tag=93334\r\n"
    b"Max-Forwards: 10\r\n"
    b"Call-ID: quotbal.aksdj\r\n"
    b"Contact: <sip:caller@host59.example.net>\r\n"
    b"CSeq: 8 INVITE\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 152\r\n"
    b"\r\n" + sdp(b"192.0.2.15")
)

# §3.1.2.7 <> Enclosing Request-URI
LTGTRURI = (
    b"INVITE <sip:user@example.com> SIP/2.0\r\n"
    b"To: sip:user@example.com\r\n"
    b"From: sip:caller@example.net;tag=39291\r\n"
    b"Max-Forwards: 23\r\n"
    b"Call-ID: ltgtruri.1@192.0.2.5\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.5\r\n"
    b"Contact: <sip:caller@host5.example.net>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 159\r\n"
    b"\r\n" + sdp(b"192.0.2.5", t=b"3149328700 0")
)

# §3.1.2.8 Malformed SIP Request-URI (embedded LWS)
LWSRURI = (
    b"INVITE sip:user@example.com; lr SIP/2.0\r\n"
    b"To: sip:user@example.com;tag=3xfe-9921883-z9f\r\n"
    b"From: sip:caller@example.net;tag=231413434\r\n"
    b"Max-Forwards: 5\r\n"
    b"Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423\r\n"
    b"CSeq: 2130706432 INVITE\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395\r\n"
    b"Contact: <sip:caller@host1.example.net>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 159\r\n"
    b"\r\n" + sdp(b"192.0.2.1", t=b"3149328700 0")
)

# §3.1.2.9 Multiple SP Separating Request-Line Elements
LWSSTART = (
    b"INVITE  sip:user@example.com  SIP/2.0\r\n"
    b"Max-Forwards: 8\r\n"
    b"To: sip:user@example.com\r\n"
    b"From: sip:caller@example.net;tag=8814\r\n"
    b"Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com\r\n"
    b"CSeq: 1893884 INVITE\r\n"
    b"Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923\r\n"
    b"Contact: <sip:caller@host1.example.net>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 150\r\n"
    b"\r\n" + sdp(b"192.0.2.1")
)

# §3.1.2.10 SP Characters at End of Request-Line
TRWS = (
    b"OPTIONS sip:remote-target@example.com SIP/2.0  \r\n"
    b"Via: SIP/2.0/TCP host1.examle.com;branch=z9hG4bK299342093\r\n"
    b"To: <sip:remote-target@example.com>\r\n"
    b"From: <sip:local-resource@example.com>;tag=329429089\r\n"
    b"Call-ID: trws.oicu34958239neffasdhr2345r\r\n"
    b"Accept: application/sdp\r\n"
    b"CSeq: 238923 OPTIONS\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# §3.1.2.11 Escaped Headers in SIP Request-URI
ESCRURI = (
    b"INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0\r\n"
    b"To: sip:user@example.com\r\n"
    b"From: sip:caller@example.net;tag=341518\r\n"
    b"Max-Forwards: 7\r\n"
    b"Contact: <sip:caller@host39923.example.net>\r\n"
    b"Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5\r\n"
    b"CSeq: 149209342 INVITE\r\n"
    b"Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 150\r\n"
    b"\r\n" + sdp(b"192.0.2.1")
)

# §3.1.2.12 Invalid Time Zone in Date Header Field
BADDATE = (
    b"INVITE sip:user@example.com SIP/2.0\r\n"
    b"To: sip:user@example.com\r\n"
    b"From: sip:caller@example.net;tag=2234923\r\n"
    b"Max-Forwards: 70\r\n"
    b"Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234\r\n"
    b"CSeq: 1392934 INVITE\r\n"
    b"Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\r\n"
    b"Date: Fri, 01 Jan 2010 16:00:00 EST\r\n"
    b"Contact: <sip:caller@host5.example.net>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 150\r\n"
    b"\r\n" + sdp(b"192.0.2.5")
)

# §3.1.2.13 Failure to Enclose name-addr URI in <>
REGBADCT = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"To: sip:user@example.com\r\n"
    b"From: sip:user@example.com;tag=998332\r\n"
    b"Max-Forwards: 70\r\n"
    b"Call-ID: regbadct.k345asrl3fdbv@10.0.0.1\r\n"
    b"CSeq: 1 REGISTER\r\n"
    b"Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw\r\n"
    b"Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E\r\n"
    b"l: 0\r\n"
    b"\r\n"
)

# §3.1.2.14 Spaces within addr-spec
BADASPEC = (
    b"OPTIONS sip:user@example.org SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423\r\n'
    b'To: "Watson, Thomas" < sip:t.watson@example.org >\r\n'
    b"Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3\r\n"
    b"Accept: application/sdp\r\n"
    b"CSeq: 3923239 OPTIONS\r\n"
    b"l: 0\r\n"
    b"\r\n"
)

# §3.1.2.15 Non-token Characters in Display Name
BADDN = (
    b"OPTIONS sip:t.watson@example.org SIP/2.0\r\n"
    b"Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw\r\n"
    b"Max-Forwards:      70\r\n"
    b"From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43\r\n"
    b"To:      Watson, Thomas <sip:t.watson@example.org>\r\n"
    b"Call-ID: baddn.31415@c.example.com\r\n"
    b"Accept: application/sdp\r\n"
    b"CSeq:    3923239 OPTIONS\r\n"
    b"l: 0\r\n"
    b"\r\n"
)

# §3.1.2.16 Unknown Protocol Version
BADVERS = (
    b"OPTIONS sip:t.watson@example.org SIP/7.0\r\n"
    b"Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw\r\n"
    b"Max-Forwards:     70\r\n"
    b"From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe\r\n"
    b"To:      T. Watson <sip:t.watson@example.org>\r\n"
    b"Call-ID: badvers.31417@c.example.com\r\n"
    b"CSeq:    1 OPTIONS\r\n"
    b"l: 0\r\n"
    b"\r\n"
)

# §3.1.2.17 Start Line and CSeq Method Mismatch
MISMATCH01 = (
    b"OPTIONS sip:user@example.com SIP/2.0\r\n"
    b"To: sip:j.user@example.com\r\n"
    b"From: sip:caller@example.net;tag=34525\r\n"
    b"Max-Forwards: 6\r\n"
    b"Call-ID: mismatch01.dj0234sxdfl3\r\n"
    b"CSeq: 8 INVITE\r\n"
    b"Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\r\n"
    b"l: 0\r\n"
    b"\r\n"
)

# §3.1.2.18 Unknown Method with CSeq Method Mismatch
MISMATCH02 = (
    b"NEWMETHOD sip:user@example.com SIP/2.0\r\n"
    b"To: sip:j.user@example.com\r\n"
    b"From: sip:caller@example.net;tag=34525\r\n"
    b"Max-Forwards: 6\r\n"
    b"Call-ID: mismatch02.dj0234sxdfl3\r\n"
    b"CSeq: 8 INVITE\r\n"
    b"Contact: <sip:caller@host.example.net>\r\n"
    b"Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw\r\n"
    b"Content-Type: application/sdp\r\n"
    b"l: 138\r\n"
    b"\r\n"
    b"v=0\r\n"
    b"o=mhandley 29739 7272939 IN IP4 192.0.2.1\r\n"
    b"c=IN IP4 192.0.2.1\r\n"
    b"m=audio 49217 RTP/AVP 0 12\r\n"
    b"m=video 3227 RTP/AVP 31\r\n"
    b"a=rtpmap:31 LPC\r\n"
)

# §3.1.2.19 Overlarge Response Code
BIGCODE = (
    b"SIP/2.0 4294967301 better not break the receiver\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\r\n"
    b"Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i\r\n"
    b"CSeq: 353494 INVITE\r\n"
    b"From: <sip:user@example.com>;tag=39ansfi3\r\n"
    b"To: <sip:user@example.edu>;tag=902jndnke3\r\n"
    b"Content-Length: 0\r\n"
    b"Contact: <sip:user@host105.example.com>\r\n"
    b"\r\n"
)

# §3.2.1 Missing Transaction Identifier (Transaction Layer Semantics)
BADBRANCH = (
    b"OPTIONS sip:user@example.com SIP/2.0\r\n"
    b"To: sip:user@example.com\r\n"
    b"From: sip:caller@example.org;tag=33242\r\n"
    b"Max-Forwards: 3\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK\r\n"
    b"Accept: application/sdp\r\n"
    b"Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n\r\n"
    b"CSeq: 8 OPTIONS\r\n"
    b"l: 0\r\n"
    b"\r\n"
)

# REFUSED: parse_message raises ParseError for the reason given. Requests carry the
# headers needed for a stateless 400; responses (scalarlg, bigcode) are simply dropped.
REFUSED = {
    # "should respond with a 400": the Via holds empty parameters.
    "badinv01": (BADINV01, "bad Via"),
    # "should respond with a 400" over UDP (RFC 3261 §18.3).
    "clerr": (CLERR, "shorter than Content-Length"),
    # "should respond with an error"; on a stream the connection is closed.
    "ncl": (NCL, "Content-Length"),
    # "should respond with a 400 Bad Request due to the CSeq error".
    "scalar02": (SCALAR02, "CSeq number out of range"),
    # "will simply discard it".
    "scalarlg": (SCALARLG, "CSeq number out of range"),
    # "should return a 400"; no quote is inferred.
    "quotbal": (QUOTBAL, "bad To: unterminated quoted string"),
    # "reasonable always to reject ... with a 400".
    "ltgtruri": (LTGTRURI, "bad Request-URI"),
    # "should respond with a 400".
    "lwsruri": (LWSRURI, "bad request line"),
    # "acceptable to reject this request as malformed".
    "lwsstart": (LWSSTART, "bad request line"),
    # "acceptable to reject this request as malformed".
    "trws": (TRWS, "bad request line"),
    # "acceptable ... to reject this request with a 400" (RFC 3261 §19.1.1).
    "escruri": (ESCRURI, "headers in Request-URI"),
    # "reasonable to reject this request with a 400"; To must parse for the registrar.
    "badaspec": (BADASPEC, "bad To: not a sip: or sips: URI"),
    # "reasonable always to reject this kind of error with a 400".
    "baddn": (BADDN, "bad From: display name must be quoted"),
    # "will respond with a 400".
    "mismatch01": (MISMATCH01, "CSeq method does not match"),
    # 501 is preferred, "a 400 Bad Request is also acceptable": a registrar answers 400.
    "mismatch02": (MISMATCH02, "CSeq method does not match"),
    # "should simply drop it".
    "bigcode": (BIGCODE, "bad status line"),
}


@pytest.mark.parametrize("name", REFUSED)
def test_parse_refuses_invalid_torture_message(name):
    data, reason = REFUSED[name]

    with pytest.raises(ParseError, match=reason):
        parse_message(data)


@pytest.mark.parametrize("name", [n for n, (data, _) in REFUSED.items() if not data.startswith(b"SIP/")])
def test_refused_torture_request_can_be_answered_400(name):
    data, _ = REFUSED[name]
    with pytest.raises(ParseError) as caught:
        parse_message(data)

    response = make_response(caught.value.headers, 400, "Bad Request", to_tag="e1")

    call_id = next(line for line in data.split(b"\r\n") if line.startswith(b"Call-ID"))
    assert response.headers.get("Call-ID") == call_id.split(b":", 1)[1].strip().decode()
    assert response.headers.get_all("Via")


def test_stream_framer_waits_for_the_body_of_clerr():
    # RFC 4475 §3.1.2.2: on a stream the receiver can only wait for more data (the asyncio
    # layer closes the connection when none comes).
    framer = StreamFramer()

    assert framer.feed(CLERR) == []
    assert not framer.broken


@pytest.mark.parametrize("data", [NCL, LWSSTART.replace(b"Content-Length: 150", b"Content-Length: five")])
def test_stream_framer_breaks_on_bad_content_length(data):
    framer = StreamFramer()

    [item] = framer.feed(data)

    assert isinstance(item, ParseError)
    assert framer.broken


# ACCEPTED: RFC 4475 lets the element be liberal, and nothing the registrar relies on is
# wrong; the offending value is refused by its own parser where the registrar reads it.


def test_parse_accepts_baddate_whose_date_the_registrar_never_reads():
    # "shouldn't do that unless the contents of the Date header field were actually
    # important to its processing".
    message = parse_message(BADDATE)

    assert message.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


def test_parse_accepts_regbadct_but_its_contact_is_refused():
    # "reasonable ... to respond with a 400": the registrar does, when it parses Contact.
    message = parse_message(REGBADCT)

    with pytest.raises(ParseError, match="enclosed in <>"):
        parse_contact(message.headers.get("Contact"))


def test_parse_accepts_badvers_and_keeps_version_for_505():
    # "should respond ... with a 505 Version Not Supported": the version must survive parsing.
    message = parse_message(BADVERS)

    assert message.version == "SIP/7.0"
    assert parse_via(message.headers.get("Via")).protocol == "SIP/7.0"


def test_parse_accepts_badbranch_with_bare_magic_cookie():
    # "A parser must not break": the element may treat it as an RFC 2543 branch.
    message = parse_message(BADBRANCH)

    assert parse_via(message.headers.get("Via")).branch == "z9hG4bK"


def test_parse_accepts_scalar02_values_other_than_cseq_as_text():
    # Were only Max-Forwards or the expiries wrong, "the element could choose to process the
    # request as if the field were absent" or use the default: they stay text for the
    # registrar to bound.
    message = parse_message(SCALAR02.replace(b"36893488147419103232", b"3689348814"))

    assert message.headers.get("Max-Forwards") == "300"
    assert parse_contact(message.headers.get("Contact")).params == {"expires": "280297596632815"}
