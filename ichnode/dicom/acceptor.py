"""One association accepted by the node, served start to end in the connection's own thread.

Why not pynetdicom's acceptor: its two reactor threads per association poll queues with 1 ms
sleeps, several times per C-STORE, which made the node's receive of a 300-slice series twice as
slow as the DICOM exchange itself (docs/performance.md). Here a blocking loop reads a PDU, acts,
answers: one thread, no polling, no queues. What is intricate and not on the hot path is still
pynetdicom's: A-ASSOCIATE-RQ/AC encoding and presentation context negotiation.

Served: C-ECHO and C-STORE on the negotiated contexts; A-RELEASE; A-ABORT. A request with any
other command gets status 0x0211 (unrecognised operation). Which PDU is allowed when is the table
in states.py; anything else, an invalid PDU, a PDV on a context that was not accepted, a command
set over node.max_command_kb, or a PDU not complete within node.network_timeout_s (or an
association older than node.max_association_s) ends the association with an A-ABORT.
"""
from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (A_ASSOCIATE, ImplementationClassUIDNotification,
                                       ImplementationVersionNameNotification,
                                       MaximumLengthNotification, SCP_SCU_RoleSelectionNegotiation)
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor

from ichnode.dicom import dimse, ul
from ichnode.dicom.states import PDU_NAMES, Action, State, step
from ichnode.log import get_logger

log = get_logger("ichnode.association")

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
RQ_LIMIT = 1 << 20  # an A-ASSOCIATE-RQ is a few kB; more is not a DICOM peer
UNRECOGNISED_OPERATION = 0x0211
PROCESSING_FAILURE = 0x0110

# A-ASSOCIATE-RJ (result, source, reason), PS3.8 9.3.4
REJECT_CALLING_AE = (0x01, 0x01, 0x03)  # permanent, service user, calling AE title not recognised
REJECT_CALLED_AE = (0x01, 0x01, 0x07)  # permanent, service user, called AE title not recognised
REJECT_APPLICATION_CONTEXT = (0x01, 0x01, 0x02)  # application context name not supported
REJECT_PROTOCOL_VERSION = (0x01, 0x02, 0x02)  # service provider (ACSE): protocol version
REJECT_BUSY = (0x02, 0x03, 0x02)  # transient, service provider (presentation): local limit exceeded


@dataclass(frozen=True)
class Settings:
    allowed_calling_aets: frozenset[str]  # empty: any
    called_aet: str | None  # the node's own AE title, when a peer must call it by name
    certificate_aets: dict  # TLS client certificate common name -> calling AE titles it may use
    max_pdu: int  # advertised Maximum Length Received
    network_timeout_s: float  # a PDU must arrive whole within this
    acse_timeout_s: float  # the A-ASSOCIATE-RQ must arrive whole within this
    max_association_s: float
    max_command_bytes: int
    max_dataset_bytes: int  # fragments beyond this are dropped and the C-STORE refused
    supported: tuple[PresentationContext, ...]


@dataclass
class Session:
    """Who is on the other end of one association, and what it brought."""

    address: str
    tls: bool
    certificate_name: str | None = None  # common name of a verified TLS client certificate
    calling_aet: str = ""
    called_aet: str = ""
    counts: dict = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


@dataclass(frozen=True)
class Context:
    id: int
    abstract_syntax: str
    transfer_syntax: str


class Services(Protocol):
    def c_store(self, session: Session, context: Context, command: dimse.Command,
              fragments: list[memoryview] | None, size: int) -> tuple[int, str | None]:
        """The C-STORE status (and an error comment); fragments is None when over the size limit."""

    def association_event(self, kind: str, session: Session, **fields) -> None:
        """accepted, rejected (reason) or closed (how: released, aborted, connection lost)."""


class AssociationSlots:
    """The association limit (node.max_associations), shared by the server's connections."""

    def __init__(self, limit: int):
        self.limit, self.active = limit, 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.active >= self.limit:
                return False
            self.active += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.active -= 1


class Acceptor:
    def __init__(self, sock: socket.socket, session: Session, settings: Settings,
                 services: Services, slots: AssociationSlots):
        self.sock, self.session, self.settings = sock, session, settings
        self.services, self.slots = services, slots
        self.contexts: dict[int, Context] = {}
        self.peer_max_pdu = 0
        self.pdu_limit = settings.max_pdu + (1 << 16)  # P-DATA limit: our advertised maximum, with slack
        self.reader = ul.PduReader(sock, time.monotonic() + settings.max_association_s)
        self.message = _Message()
        self.has_slot = False

    def run(self) -> None:
        """Serve the connection by the state table (states.py) until it is closed."""
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        state, how = State.AWAITING_ASSOCIATE_RQ, "connection lost"
        try:
            while state is not State.CLOSED:
                timeout = (self.settings.acse_timeout_s if state is State.AWAITING_ASSOCIATE_RQ
                           else self.settings.network_timeout_s)
                pdu_type, length = self.reader.header(timeout)
                action, state = step(state, pdu_type)
                how = self._act(action, state, pdu_type, length) or how
                if action is Action.NEGOTIATE and not self.has_slot:
                    return  # rejected or refused: answered, nothing to close
        except ul.DeadlinePassed:
            if self.has_slot:  # before the A-ASSOCIATE-RQ (ARTIM, AA-2) the connection just closes
                over = time.monotonic() >= self.reader.association_deadline
                how = ("aborted: association over node.max_association_s" if over
                       else "aborted: PDU not complete within node.network_timeout_s")
                self._send_quietly(ul.abort())
        except ul.BadPDU as exc:
            how = f"aborted: {exc}"
            if not self.has_slot:
                log.warning("association_refused", reason=str(exc)[:200], address=self.session.address)
            self._send_quietly(ul.abort(ul.ABORT_BY_PROVIDER, exc.reason))
        except (ul.PeerClosed, OSError):
            pass
        finally:
            if self.has_slot:  # whatever happened after the slot was taken, it goes back
                self.slots.give_back()
                log.info("association_closed", how=how, calling_aet=self.session.calling_aet,
                         address=self.session.address, **self.session.counts)
                self.services.association_event("closed", self.session, how=how.split(":")[0])

    def _act(self, action: Action, state: State, pdu_type: int, length: int) -> str | None:
        """Carry out one transition; returns how the association ended, when it did."""
        if action is Action.NEGOTIATE:
            self._negotiate(length)
        elif action is Action.TRANSFER:
            self._transfer(length)
        elif action is Action.RELEASE:
            self._small_body(length)
            self.sock.sendall(ul.release_rp())
            return "released"
        elif action is Action.PEER_ABORTED:
            return "aborted by the peer"
        else:
            reason = ul.REASON_UNEXPECTED_PDU
            raise ul.BadPDU(f"{PDU_NAMES.get(pdu_type)} not allowed in {state.value}", reason)
        return None

    def _small_body(self, length: int) -> bytearray:
        if length > RQ_LIMIT:
            raise ul.BadPDU(f"PDU of {length} bytes is over the limit of {RQ_LIMIT}")
        return self.reader.exact(length)

    # --- association establishment ---------------------------------------------------------------
    def _negotiate(self, length: int) -> None:
        body = self._small_body(length)
        try:
            rq = A_ASSOCIATE_RQ()
            rq.decode(bytes([ul.ASSOCIATE_RQ, 0]) + len(body).to_bytes(4, "big") + bytes(body))
            request = rq.to_primitive()
        except Exception as exc:  # noqa: BLE001 - pynetdicom's decoder raises many kinds on bad bytes
            raise ul.BadPDU(f"unreadable A-ASSOCIATE-RQ: {exc}"[:200]) from None
        self.session.calling_aet = (request.calling_ae_title or "").strip()
        self.session.called_aet = (request.called_ae_title or "").strip()
        rejection = self._rejection(rq, request)
        if rejection is None:
            self.has_slot = self.slots.take()
            if not self.has_slot:
                rejection = REJECT_BUSY, "node.max_associations reached"
        if rejection is not None:
            (result, source, reason), why = rejection
            self._send_quietly(ul.associate_rj(result, source, reason))
            log.warning("association_rejected", reason=why, calling_aet=self.session.calling_aet,
                        address=self.session.address)
            self.services.association_event("rejected", self.session, reason=why)
            return
        try:
            self._accept(request)
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 - a request pynetdicom's negotiation chokes on
            raise ul.BadPDU(f"cannot negotiate: {exc}"[:200]) from None
        self.services.association_event("accepted", self.session)

    def _rejection(self, rq: A_ASSOCIATE_RQ, request: A_ASSOCIATE):
        if not rq.protocol_version & 0x01:
            return REJECT_PROTOCOL_VERSION, f"protocol version 0x{rq.protocol_version:04X}"
        if str(request.application_context_name) != APPLICATION_CONTEXT:
            return REJECT_APPLICATION_CONTEXT, "not the DICOM application context"
        called = self.settings.called_aet
        if called is not None and self.session.called_aet != called:
            return REJECT_CALLED_AE, "called AE title is not node.ae_title"
        allowed = self.settings.allowed_calling_aets
        if allowed and self.session.calling_aet not in allowed:
            return REJECT_CALLING_AE, "calling AE title not in node.allowed_calling_aets"
        if self.settings.certificate_aets and self.session.tls:
            name = self.session.certificate_name or ""
            if self.session.calling_aet not in self.settings.certificate_aets.get(name, ()):
                return REJECT_CALLING_AE, "calling AE title not allowed for this client certificate " \
                                          "(tls.certificate_aets)"
        return None
    def _accept(self, request: A_ASSOCIATE) -> None:
        roles = {}
        for item in request.user_information:
            if isinstance(item, MaximumLengthNotification):
                self.peer_max_pdu = item.maximum_length_received or 0
            elif isinstance(item, SCP_SCU_RoleSelectionNegotiation):
                roles[item.sop_class_uid] = (item.scu_role, item.scp_role)
        results, role_replies = negotiate_as_acceptor(
            request.presentation_context_definition_list, list(self.settings.supported), roles)
        self.contexts = {cx.context_id: Context(cx.context_id, str(cx.abstract_syntax),
                                                str(cx.transfer_syntax[0]))
                         for cx in results if cx.result == 0x00}
        length = MaximumLengthNotification()
        length.maximum_length_received = self.settings.max_pdu
        uid = ImplementationClassUIDNotification()
        uid.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
        version = ImplementationVersionNameNotification()
        version.implementation_version_name = PYNETDICOM_IMPLEMENTATION_VERSION
        reply_items = [length, uid, version, *role_replies]
        accept = A_ASSOCIATE()
        accept.application_context_name = APPLICATION_CONTEXT
        accept.calling_ae_title = request.calling_ae_title
        accept.called_ae_title = request.called_ae_title
        accept.result = 0x00
        accept.presentation_context_definition_results_list = results
        accept.user_information = reply_items
        ac = A_ASSOCIATE_AC()
        ac.from_primitive(accept)
        self.sock.sendall(ac.encode())
        log.info("association_accepted", calling_aet=self.session.calling_aet,
                 address=self.session.address, contexts=len(self.contexts))

    # --- the established association -------------------------------------------------------------
    def _transfer(self, length: int) -> None:
        if length > self.pdu_limit:
            if self._drop_oversized(length, self.message):
                self._dispatch(self.message)
                self.message = _Message()
            return
        body = self.reader.exact(length)
        for context_id, is_command, last, fragment in ul.pdv_items(body):
            if self.message.add(context_id, is_command, last, fragment, self):
                self._dispatch(self.message)
                self.message = _Message()

    def _drop_oversized(self, length: int, message: "_Message") -> bool:
        """A P-DATA-TF too large to hold (a peer that took our unlimited maximum PDU length at its
        word): one dataset fragment of a C-STORE is read and dropped, so the instance is refused
        with a status instead of the association being aborted. True when the message is complete."""
        item_length, context_id, header = struct.unpack(">LBB", self.reader.exact(6))
        if item_length != length - 4 or header & 0x01 or message.command is None \
                or context_id != message.context_id:
            raise ul.BadPDU(f"PDU of {length} bytes is over the limit of {self.pdu_limit}")
        self.reader.discard(item_length - 2)
        message.size += item_length - 2
        message.fragments = None
        return bool(header & 0x02)

    def _dispatch(self, message: "_Message") -> None:
        command, context = message.command, self.contexts[message.context_id]
        if command.field == dimse.C_STORE_RQ and command.has_dataset:
            try:
                status, comment = self.services.c_store(self.session, context, command,
                                                        message.fragments, message.size)
            except Exception:  # noqa: BLE001 - a bug answers this instance, the association goes on
                log.exception("store_failed", calling_aet=self.session.calling_aet)
                status, comment = PROCESSING_FAILURE, "internal error in the node, see its log"
        elif command.field == dimse.C_ECHO_RQ:
            status, comment = 0x0000, None
        else:
            status, comment = UNRECOGNISED_OPERATION, "only C-ECHO and C-STORE are served"
        response = dimse.response(command, status, comment)
        self.sock.sendall(ul.p_data(context.id, response, self.peer_max_pdu))

    def _send_quietly(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass


@dataclass
class _Message:
    """One DIMSE message being assembled from PDV fragments: command first, then its dataset."""

    context_id: int | None = None
    command_parts: list = field(default_factory=list)
    command: dimse.Command | None = None
    fragments: list | None = field(default_factory=list)
    size: int = 0

    def add(self, context_id: int, is_command: bool, last: bool, fragment: memoryview,
            acceptor: Acceptor) -> bool:
        """Take one fragment; True when the message is complete."""
        if context_id not in acceptor.contexts:
            raise ul.BadPDU(f"PDV on presentation context {context_id}, which was not accepted")
        if self.context_id is None:
            self.context_id = context_id
        elif context_id != self.context_id:
            raise ul.BadPDU("fragments of one message on two presentation contexts")
        if is_command:
            if self.command is not None:
                raise ul.BadPDU("command fragment after the command was complete")
            self.command_parts.append(bytes(fragment))
            if sum(map(len, self.command_parts)) > acceptor.settings.max_command_bytes:
                raise ul.BadPDU("command set over node.max_command_kb")
            if not last:
                return False
            try:
                self.command = dimse.decode_command(b"".join(self.command_parts))
            except dimse.BadCommand as exc:
                raise ul.BadPDU(f"unreadable command set: {exc}") from None
            return not self.command.has_dataset
        if self.command is None:
            raise ul.BadPDU("dataset fragment before its command")
        self.size += len(fragment)
        if self.fragments is not None:
            if self.size > acceptor.settings.max_dataset_bytes:
                self.fragments = None  # keep reading, keep nothing: the C-STORE is refused
            else:
                self.fragments.append(fragment)
        return last

