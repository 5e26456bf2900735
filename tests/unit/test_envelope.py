from pouch.gateway.errors import HTTP_STATUS
from pouch.proto import envelope as env
from pouch.proto.envelope import ERROR_CODES, PouchError


def test_a_request_survives_encoding():
    body = env.unpack(env.request(7, "inspect", {"id": "abc", "size": True}, 12.5))
    assert body == {"id": 7, "method": "inspect", "args": {"id": "abc", "size": True},
                    "deadline": 12.5}


def test_replies_carry_results_or_errors():
    reply = env.unpack(env.ok_reply(3, {"a": [1, 2]}))
    assert reply == {"id": 3, "ok": True, "result": {"a": [1, 2]}}
    stream_item = env.unpack(env.ok_reply(3, "x", more=True))
    assert stream_item["more"] is True
    failed = env.unpack(env.error_reply(4, env.not_found("No such container: x")))
    assert failed == {"id": 4, "ok": False,
                      "error": {"code": "not_found", "message": "No such container: x"}}


def test_bytes_stay_bytes():
    head = b"HTTP/1.1 101\r\n"
    assert env.unpack(env.pack({"preamble": head}))["preamble"] == head


def test_an_unknown_code_becomes_internal():
    assert PouchError.from_wire({"code": "weird", "message": "m"}).code == "internal"


def test_every_error_code_has_one_http_status():
    assert set(HTTP_STATUS) == ERROR_CODES
    assert HTTP_STATUS["not_found"] == 404 and HTTP_STATUS["conflict"] == 409
    assert HTTP_STATUS["invalid"] == 400 and HTTP_STATUS["unavailable"] == 503
