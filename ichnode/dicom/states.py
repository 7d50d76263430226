"""The acceptor's DICOM Upper Layer state machine as data (PS3.8 9.2, tables 9-7 and 9-10).

Only the part an association acceptor that never initiates or releases can reach is here: the
node waits for an A-ASSOCIATE-RQ (Sta2), serves the established association (Sta6) and answers a
release (Sta7 is never entered: the node does not ask to release). A PDU that the table does not
list for the current state is answered with an A-ABORT (AA-1 in Sta2, AA-8 in Sta6), as the
standard's "otherwise" cells say; so are unreadable PDUs and the two deadlines (ARTIM in Sta2,
the node's own PDU and association deadlines in Sta6).

Read the table against PS3.8 table 9-10, columns Sta2 and Sta6.
"""
from __future__ import annotations

import enum

from ichnode.dicom import ul


class State(enum.Enum):
    AWAITING_ASSOCIATE_RQ = "Sta2"  # transport connection open, ARTIM running
    ESTABLISHED = "Sta6"  # data transfer
    CLOSED = "Sta1"  # idle: the connection is closed


class Action(enum.Enum):
    NEGOTIATE = "AE-6: accept (AE-7) or reject (AE-8) the association"
    TRANSFER = "DT-2: pass the P-DATA-TF's PDV items to the DIMSE message"
    RELEASE = "AR-2, AR-4: send A-RELEASE-RP, close"
    PEER_ABORTED = "AA-3 (Sta6) / AA-2 (Sta2): the peer aborted, close"
    ABORT = "AA-1 (Sta2) / AA-8 (Sta6): send A-ABORT, close"


TRANSITIONS: dict[tuple[State, int], tuple[Action, State]] = {
    (State.AWAITING_ASSOCIATE_RQ, ul.ASSOCIATE_RQ): (Action.NEGOTIATE, State.ESTABLISHED),
    (State.AWAITING_ASSOCIATE_RQ, ul.ABORT): (Action.PEER_ABORTED, State.CLOSED),
    (State.ESTABLISHED, ul.P_DATA): (Action.TRANSFER, State.ESTABLISHED),
    (State.ESTABLISHED, ul.RELEASE_RQ): (Action.RELEASE, State.CLOSED),
    (State.ESTABLISHED, ul.ABORT): (Action.PEER_ABORTED, State.CLOSED),
}

PDU_NAMES = {ul.ASSOCIATE_RQ: "A-ASSOCIATE-RQ", ul.ASSOCIATE_AC: "A-ASSOCIATE-AC",
             ul.ASSOCIATE_RJ: "A-ASSOCIATE-RJ", ul.P_DATA: "P-DATA-TF", ul.RELEASE_RQ: "A-RELEASE-RQ",
             ul.RELEASE_RP: "A-RELEASE-RP", ul.ABORT: "A-ABORT"}


def step(state: State, pdu_type: int) -> tuple[Action, State]:
    """What the acceptor does with a PDU received in `state`, and the state it moves to."""
    return TRANSITIONS.get((state, pdu_type), (Action.ABORT, State.CLOSED))
