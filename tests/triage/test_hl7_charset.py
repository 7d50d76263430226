"""HL7 character set: the ORU is UTF-8 with MSH-18 "UNICODE UTF-8"; names go out as text (no \\X..\\
hex escapes), the HL7 delimiters are still escaped, and nothing in a field can break MLLP framing.
Round trips go through the real MLLP listener of tests/triage/mllp.py (it decodes UTF-8)."""
import hl7

from ichnode.config import MllpConfig, NotifyConfig
from ichnode.triage.notify import build_oru, frame
from tests.triage.mllp import MllpListener
from tests.triage.stores import Notifying

MLLP = MllpConfig(host="h", port=1, sending_facility="KLINIKUM MÜNCHEN")


def _send(stores, **row):
    job = stores.job(**row)
    with MllpListener() as listener:
        config = NotifyConfig(mllp=MllpConfig(host="127.0.0.1", port=listener.port), timeout_s=5)
        n = Notifying(stores, config)
        assert n.enqueue(job) == 1 and n.run_due() == 1
    (sent,) = stores.outbox.notifications(job)
    assert (sent.state, sent.ack_code) == ("sent", "AA")
    (message,) = listener.messages
    return message


def test_mueller_round_trips_as_utf8_text_with_msh18(stores):
    message = _send(stores, patient_name="MÜLLER^JÜRGEN^^DR.", patient_id="ÄÖ-123")
    msh, pid = message.segment("MSH"), message.segment("PID")
    assert str(msh(18)) == "UNICODE UTF-8" and str(msh(12)) == "2.5.1"
    assert str(pid(5)(1)(1)) == "MÜLLER" and str(pid(5)(1)(2)) == "JÜRGEN"
    assert str(pid(5)(1)(4)) == "DR." and str(pid(3)) == "ÄÖ-123"


def test_wire_bytes_are_utf8_not_hex_escapes(stores):
    row = stores.worklist.get(stores.job(patient_name="MÜLLER^ZOË"))
    wire = frame(build_oru(row, MLLP, "C1", now=0))
    assert "MÜLLER^ZOË".encode("utf-8") in wire and "KLINIKUM MÜNCHEN".encode("utf-8") in wire
    assert b"\\X" not in wire and b"\\x" not in wire
    wire.decode("utf-8")  # strict: the whole frame is valid UTF-8
    assert "MÜLLER".encode("latin-1") not in wire


def test_delimiters_still_escaped_and_come_back_intact(stores):
    name = "O|BRIEN&SMITH^ANNE~MARIE\\JO"
    reason = "ICH 42 mL | a^b & c ~ d \\ e"
    message = _send(stores, patient_name=name, reason=reason)
    pid5 = message.segment("PID")(5)(1)
    assert message.unescape(str(pid5(1))) == "O|BRIEN&SMITH"  # family name: | and & escaped
    assert message.unescape(str(pid5(2))) == "ANNE~MARIE\\JO"  # ^ splits components, as in DICOM
    reasons = [s for s in message.segments("OBX") if str(s(3)(1)(1)) == "REASON"]
    assert message.unescape(str(reasons[0](5))) == reason
    row = {"priority": "high", "reason": reason, "patient_name": name, "arrived": 0}
    text = str(build_oru(row, MLLP, "C2", now=0))
    assert "\\F\\" in text and "\\T\\" in text and "\\R\\" in text and "\\E\\" in text


def test_control_characters_cannot_break_the_frame():
    row = {"priority": "critical", "reason": "line one\r\nline two\x0bvt\x1cfs\x00", "arrived": 0,
           "patient_name": "A\x1c^B"}
    wire = frame(build_oru(row, MLLP, "C3", now=0))
    assert wire.count(b"\x0b") == 1 and wire.count(b"\x1c") == 1 and wire.endswith(b"\x1c\r")
    text = wire[1:-2].decode("utf-8")
    assert "line one\\.br\\line two\\X0B\\vt\\X1C\\fs\\X00\\" in text
    assert "A\\X1C\\^B" in text
    assert len(hl7.parse(text).segments("PID")) == 1  # no stray segment from the \r\n


def test_person_name_groups_take_the_first_non_empty():
    def pid5(pn):
        row = {"priority": "routine", "reason": "", "patient_name": pn, "arrived": 0}
        return str(build_oru(row, MLLP, "C4", now=0).segment("PID")(5))

    assert pid5("Yamada^Tarou=山田^太郎=やまだ^たろう") == "Yamada^Tarou"
    assert pid5("=山田^太郎=やまだ^たろう") == "山田^太郎"
    assert pid5("") == "" and pid5(None) == ""
