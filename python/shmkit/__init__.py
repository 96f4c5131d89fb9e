"""Shared-memory IPC for Linux, from Python: segments, message rings,
topics and services, zero-copy into numpy.

The classes are those of the Rust library ``shmkit`` (the extension module
``shmkit._shmkit``), with Python's conventions: timeouts are float seconds,
blocking calls release the GIL and are interrupted by Ctrl-C, and errors are
exceptions deriving from :class:`shmkit.Error` (and, where one means the
same, from Python's own: ``Timeout`` is a ``TimeoutError``, ``NotFound`` a
``FileNotFoundError``, ``PermissionDenied`` a ``PermissionError``).

>>> import shmkit
>>> with shmkit.Producer("doc-ring") as producer, shmkit.Consumer("doc-ring") as consumer:
...     producer.send(b"hello")
...     consumer.recv()
b'hello'
"""

from ._shmkit import (
    AlreadyExists,
    Attachment,
    Busy,
    Client,
    Closed,
    Consumer,
    Corrupt,
    Empty,
    Error,
    Full,
    InUse,
    InvalidArgument,
    Lagged,
    Mapping,
    Message,
    NotASegment,
    NotFound,
    OptionMismatch,
    OsError,
    OutOfBounds,
    PeerGone,
    PeerLeft,
    PendingCall,
    PermissionDenied,
    Producer,
    Publisher,
    Request,
    Segment,
    Server,
    ServiceFull,
    Stat,
    Subscriber,
    Timeout,
    TooLarge,
    TopicFull,
    Truncated,
    UntrustedOwner,
    WrongType,
    segments,
)

__all__ = [
    "AlreadyExists",
    "Attachment",
    "Busy",
    "Client",
    "Closed",
    "Consumer",
    "Corrupt",
    "Empty",
    "Error",
    "Full",
    "InUse",
    "InvalidArgument",
    "Lagged",
    "Mapping",
    "Message",
    "NotASegment",
    "NotFound",
    "OptionMismatch",
    "OsError",
    "OutOfBounds",
    "PeerGone",
    "PeerLeft",
    "PendingCall",
    "PermissionDenied",
    "Producer",
    "Publisher",
    "Request",
    "Segment",
    "Server",
    "ServiceFull",
    "Stat",
    "Subscriber",
    "Timeout",
    "TooLarge",
    "TopicFull",
    "Truncated",
    "UntrustedOwner",
    "WrongType",
    "segments",
]
