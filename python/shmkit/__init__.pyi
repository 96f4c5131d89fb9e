"""Type stubs of shmkit: shared-memory IPC for Linux (segments, message
rings and topics), zero-copy into numpy."""

from collections.abc import Iterator
from types import TracebackType
from typing import Literal

from typing_extensions import Buffer

__all__ = [
    "AlreadyExists", "Attachment", "Busy", "Closed", "Consumer", "Corrupt", "Empty", "Error",
    "Full", "InUse", "InvalidArgument", "Lagged", "Mapping", "Message", "NotASegment", "NotFound",
    "OptionMismatch", "OsError", "OutOfBounds", "PeerGone", "PeerLeft", "PermissionDenied",
    "Producer", "Publisher", "Segment", "ServiceFull",
    "Stat", "Subscriber", "Timeout", "TooLarge", "TopicFull", "Truncated", "UntrustedOwner",
    "segments",
]

Key = int | str
"""A System V key (an int, any 32 bits), or a string as the CLI takes it:
"0x1234", "4660", "ftok:PATH:PROJ", "private", or a POSIX name "/name"."""

# --- Exceptions -------------------------------------------------------------

class Error(Exception):
    """The base of every exception shmkit raises."""

class NotFound(Error, FileNotFoundError):
    """No segment has this key or name."""

class AlreadyExists(Error, FileExistsError):
    """An exclusive create found the key or name taken."""

class PermissionDenied(Error, PermissionError):
    """The kernel's permission check refused the operation."""

class UntrustedOwner(Error, PermissionError):
    """The ring, topic or segment belongs to a user this process does not trust."""

class InvalidArgument(Error, ValueError):
    """An argument that can never be valid: a bad key, name, size or mode."""

class TooLarge(Error, ValueError):
    """A size over a limit: a message longer than the ring's largest, a segment over shmmax."""

class OutOfBounds(Error, IndexError):
    """A byte range outside the segment."""

class Corrupt(Error):
    """Bytes in shared memory that break the format (or a format version this shmkit does not read)."""

class Truncated(Error):
    """Someone shrank the segment under this process's mapping."""

class NotASegment(Error):
    """Something other than a shared-memory segment is at this POSIX name."""

class PeerGone(Error):
    """The process at the other end died without closing."""

class PeerLeft(Error):
    """The other end left the ring cleanly and will not read what is sent."""

class OptionMismatch(Error, ValueError):
    """An option given to open an existing ring or topic (its capacity) differs from its own."""

class Closed(Error):
    """The sender closed, and everything it sent was received."""

class Timeout(Error, TimeoutError):
    """A blocking call waited its full timeout."""

class Empty(Error):
    """A non-blocking receive found no message."""

class Full(Error):
    """A non-blocking send found no room."""

class InUse(Error):
    """A live process already holds this end of the ring."""

class TopicFull(Error):
    """Every publisher or subscriber place of the topic is held by a live process."""

class ServiceFull(Error):
    """Every client slot of the service is held by a live process."""

class Lagged(Error):
    """A subscriber of a drop-oldest topic fell behind: messages were overwritten before it read them."""

class WrongType(Error, TypeError):
    """A value of another type than the one asked for: a peer sent another type, or a heap object is of another kind."""

class Busy(Error):
    """Another live process holds a lock for too long; try again."""

class OsError(Error, OSError):
    """Any other failure of a system call."""

# --- Segments ----------------------------------------------------------------

class Mapping:
    """One process's mapping of a segment, from /proc/PID/maps."""

    @property
    def pid(self) -> int:
        """The process id."""
    @property
    def command(self) -> str:
        """The command name (/proc/PID/comm)."""
    @property
    def start(self) -> int:
        """The first address."""
    @property
    def end(self) -> int:
        """One past the last address."""
    @property
    def perms(self) -> str:
        """Access as the kernel prints it: "rw-s" or "r--s"."""

class Stat:
    """The status of a segment. Fields one kind does not have are None for
    it; times are seconds since the epoch."""

    @property
    def kind(self) -> Literal["sysv", "posix"]:
        """System V or POSIX."""
    @property
    def key(self) -> str:
        """The key as the kernel reports it now ("0x0000abcd"), or the POSIX name."""
    @property
    def id(self) -> int | None:
        """The System V id."""
    @property
    def size(self) -> int:
        """Size in bytes."""
    @property
    def mode(self) -> int:
        """Permission bits."""
    @property
    def uid(self) -> int:
        """Owner uid."""
    @property
    def gid(self) -> int:
        """Owner gid."""
    @property
    def cuid(self) -> int | None:
        """Creator uid (System V)."""
    @property
    def cgid(self) -> int | None:
        """Creator gid (System V)."""
    @property
    def cpid(self) -> int | None:
        """Creator's pid (System V)."""
    @property
    def lpid(self) -> int | None:
        """Pid of the last attach or detach (System V)."""
    @property
    def nattch(self) -> int:
        """Number of attachments."""
    @property
    def atime(self) -> float | None:
        """Last attach (System V) or access (POSIX)."""
    @property
    def dtime(self) -> float | None:
        """Last detach (System V)."""
    @property
    def ctime(self) -> float | None:
        """Last change of the permissions."""
    @property
    def mtime(self) -> float | None:
        """Last modification of the contents (POSIX)."""
    @property
    def removed(self) -> bool:
        """Whether removal was asked and waits for the last detach."""
    @property
    def locked(self) -> bool:
        """Whether the pages are locked in memory (System V)."""
    @property
    def resident_bytes(self) -> int:
        """Bytes resident (System V) or allocated in the tmpfs (POSIX)."""
    @property
    def swapped_bytes(self) -> int | None:
        """Bytes swapped out (System V)."""
    @property
    def attachers(self) -> list[Mapping]:
        """The mappings of this segment in the processes this one may inspect."""

class Attachment(Buffer):
    """This process's mapping of a segment: a buffer of its bytes, shared
    with every process that maps it. detach() (or leaving a with block)
    raises BufferError while a memoryview or array of it is alive."""

    def read(self, offset: int, size: int) -> bytes:
        """Copies `size` bytes from `offset` (bounds-checked)."""
    def write(self, offset: int, data: bytes) -> None:
        """Copies `data` in at `offset` (bounds-checked)."""
    def detach(self) -> None:
        """Unmaps the segment; BufferError while a buffer of it is alive."""
    @property
    def detached(self) -> bool:
        """Whether detach() was called."""
    @property
    def readonly(self) -> bool:
        """Whether the mapping is read-only."""
    @property
    def address(self) -> int:
        """The address of the mapping's first byte in this process."""
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __enter__(self) -> Attachment: ...
    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> bool: ...

class Segment:
    """A handle on one shared-memory segment, System V or POSIX. It maps
    nothing (attach() does), and dropping it leaves the segment."""

    @staticmethod
    def create(key: Key, size: int, mode: int = 0o600) -> Segment:
        """Creates a new segment of `size` bytes with permission bits `mode`;
        AlreadyExists if the key names one."""
    @staticmethod
    def open(key: Key) -> Segment:
        """Opens the existing segment that `key` names (NotFound if none)."""
    def attach(self, readonly: bool = False) -> Attachment:
        """Maps the segment into this process."""
    def stat(self) -> Stat:
        """Everything the kernel knows about the segment."""
    def remove(self) -> None:
        """Removes the segment; mappings keep it until they detach."""
    @property
    def key(self) -> str:
        """The key: "0x0000abcd" for System V, the name for POSIX."""
    @property
    def id(self) -> int | None:
        """The System V id, or None for a POSIX segment."""
    @property
    def kind(self) -> Literal["sysv", "posix"]:
        """System V or POSIX."""
    @property
    def size(self) -> int:
        """The size in bytes, as the kernel reports it now."""

def segments() -> list[Stat]:
    """Every segment on the machine: System V first, then POSIX by name."""

# --- Rings ---------------------------------------------------------------------

class Producer:
    """The sending end of message ring `name`, created if it does not exist
    (`capacity`: its data area in bytes, a power of two; default 1 MiB).
    Closing ends the stream: the consumer receives everything, then Closed."""

    def __init__(self, name: str, capacity: int | None = None) -> None: ...
    def send(self, data: Buffer, timeout: float | None = None) -> None:
        """Sends one message (any contiguous bytes-like object), waiting
        while the ring is full (at most `timeout` seconds, then Timeout)."""
    def close(self) -> None:
        """Closes the stream; closing twice does nothing. The ring stays for
        a consumer to read (removed once read and left)."""
    @property
    def name(self) -> str:
        """The ring's name."""
    @property
    def max_message(self) -> int:
        """The largest message the ring carries, in bytes."""
    @property
    def capacity(self) -> int:
        """Bytes in the ring's data area."""
    @property
    def closed(self) -> bool:
        """Whether close() was called."""
    def __enter__(self) -> Producer: ...
    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> bool: ...

class Message(Buffer):
    """A message read in place by Consumer.read(): a read-only buffer of
    its bytes in the ring, valid until released (leaving its with block).
    Release raises BufferError while a memoryview or array of it is alive;
    using it after release raises ValueError."""

    def release(self) -> None:
        """Hands the message's space back to the producer."""
    def tobytes(self) -> bytes:
        """A copy of the message's bytes."""
    @property
    def released(self) -> bool:
        """Whether the message was released."""
    @property
    def sequence(self) -> int:
        """The position of the message's record in the ring's byte stream."""
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __enter__(self) -> Message: ...
    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> bool: ...

class Consumer(Iterator[bytes]):
    """The receiving end of message ring `name`, created if it does not
    exist. Iterating receives until the producer closes the ring."""

    def __init__(self, name: str, capacity: int | None = None) -> None: ...
    def recv(self, timeout: float | None = None) -> bytes:
        """The next message as bytes, waiting while the ring is empty (at
        most `timeout` seconds, then Timeout); Closed or PeerGone at the end."""
    def read(self, timeout: float | None = None) -> Message:
        """The next message in place, without a copy; use it in a with block."""
    def close(self) -> None:
        """Closes this end; BufferError while a Message's buffer is alive."""
    @property
    def name(self) -> str:
        """The ring's name."""
    @property
    def max_message(self) -> int:
        """The largest message the ring carries, in bytes."""
    @property
    def closed(self) -> bool:
        """Whether close() was called."""
    def __iter__(self) -> Consumer: ...
    def __next__(self) -> bytes: ...
    def __enter__(self) -> Consumer: ...
    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> bool: ...

# --- Topics ----------------------------------------------------------------------

class Publisher:
    """A publisher of topic `name`, created if it does not exist (`capacity`:
    each publisher's lane in bytes; default 256 KiB). A `capacity` given for
    an existing topic must be its own (else OptionMismatch); none takes it."""

    def __init__(self, name: str, capacity: int | None = None) -> None: ...
    def send(self, data: Buffer, timeout: float | None = None) -> None:
        """Publishes one message, waiting while the slowest subscriber has
        not made room (at most `timeout` seconds, then Timeout)."""
    def close(self) -> None:
        """Leaves the topic; closing twice does nothing."""
    @property
    def name(self) -> str:
        """The topic's name."""
    @property
    def id(self) -> int:
        """This publisher's id, unique among the topic's publishers."""
    @property
    def max_message(self) -> int:
        """The largest message the topic carries, in bytes."""
    def __enter__(self) -> Publisher: ...
    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> bool: ...

class Subscriber(Iterator[bytes]):
    """A subscriber of topic `name`, created if it does not exist (`capacity`
    as for Publisher). Iterating receives until every publisher closed."""

    def __init__(self, name: str, capacity: int | None = None) -> None: ...
    def recv(self, timeout: float | None = None) -> bytes:
        """The next message of any publisher as bytes (at most `timeout`
        seconds, then Timeout); Closed, PeerGone or Lagged as they say."""
    def close(self) -> None:
        """Leaves the topic; closing twice does nothing."""
    @property
    def last_publisher(self) -> int | None:
        """The id of the publisher of the last message received."""
    @property
    def last_sequence(self) -> int | None:
        """The last message's place in its publisher's stream (0 first)."""
    @property
    def name(self) -> str:
        """The topic's name."""
    @property
    def max_message(self) -> int:
        """The largest message the topic carries, in bytes."""
    def __iter__(self) -> Subscriber: ...
    def __next__(self) -> bytes: ...
    def __enter__(self) -> Subscriber: ...
    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> bool: ...

# --- Services --------------------------------------------------------------------

class Client:
    """A client of service `name`, created if it does not exist, in a client
    slot of its own. `call()` sends a request and waits for its response;
    `send()` and `wait()` keep several calls in flight."""

    def __init__(self, name: str) -> None: ...
    def call(self, request: Buffer, timeout: float | None = None) -> bytes:
        """Sends `request` and returns the response (at most `timeout`
        seconds in all, then Timeout and the call is abandoned)."""
    def send(self, request: Buffer, timeout: float | None = None) -> PendingCall:
        """Sends `request` without waiting for the response (waits only for
        room, at most `timeout` seconds)."""
    def wait(self, call: PendingCall, timeout: float | None = None) -> bytes:
        """The response to `call` (at most `timeout` seconds, then Timeout;
        the call stays pending). A call is answered once."""
    def close(self) -> None:
        """Gives the client's slot back; closing twice does nothing."""
    @property
    def name(self) -> str:
        """The service's name."""
    @property
    def slot(self) -> int:
        """This client's slot, as the server sees it in `Request.client`."""
    @property
    def max_request(self) -> int:
        """The largest request, in bytes."""
    @property
    def max_response(self) -> int:
        """The largest response, in bytes."""
    @property
    def in_flight(self) -> int:
        """Calls sent whose responses were not read yet."""
    def __enter__(self) -> Client: ...
    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> bool: ...

class PendingCall:
    """A call sent by `Client.send()` and not yet answered; dropping it
    unanswered abandons the call."""

    @property
    def id(self) -> int:
        """The call's id (the server sees it as `Request.id`)."""
    @property
    def answered(self) -> bool:
        """Whether `Client.wait()` has returned its response."""

class Server(Iterator[Request]):
    """The server of service `name`, created if it does not exist; one
    server holds a service at a time. Iterating receives requests for ever."""

    def __init__(self, name: str) -> None: ...
    def recv(self, timeout: float | None = None) -> Request:
        """The next request of any client (at most `timeout` seconds, then
        Timeout)."""
    def reply(self, request: Request, response: Buffer) -> None:
        """Answers `request`; a client that died or abandoned the call is
        skipped."""
    def close(self) -> None:
        """Leaves the service; the clients' calls then raise Closed."""
    @property
    def name(self) -> str:
        """The service's name."""
    @property
    def clients(self) -> int:
        """Clients connected now."""
    def __iter__(self) -> Server: ...
    def __next__(self) -> Request: ...
    def __enter__(self) -> Server: ...
    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> bool: ...

class Request:
    """One request a `Server` received."""

    @property
    def data(self) -> bytes:
        """The request's bytes."""
    @property
    def client(self) -> int:
        """The slot of the client that sent it."""
    @property
    def id(self) -> int:
        """The call's id (the client's `PendingCall.id`)."""
