# Types of the compiled cffi extension (built by _build.py), for type checkers: its `lib` holds
# every fk_* function and FK_* constant of ffi/include/fencekit.h.
from typing import Any, Callable, TypeVar

from typing_extensions import TypeAlias

_F = TypeVar("_F", bound=Callable[..., Any])

class ffi:
    CData: TypeAlias = Any
    NULL: Any
    @staticmethod
    def new(cdecl: str, init: Any = ...) -> Any: ...
    @staticmethod
    def gc(cdata: Any, destructor: Callable[[Any], Any], size: int = ...) -> Any: ...
    @staticmethod
    def string(cdata: Any, maxlen: int = ...) -> bytes: ...
    @staticmethod
    def unpack(cdata: Any, length: int) -> bytes: ...
    @staticmethod
    def cast(cdecl: str, value: Any) -> Any: ...
    @staticmethod
    def addressof(cdata: Any, *fields: str) -> Any: ...
    @staticmethod
    def memmove(dest: Any, src: Any, n: int) -> None: ...
    @staticmethod
    def sizeof(cdata: Any) -> int: ...
    @staticmethod
    def def_extern(name: str = ..., error: Any = ..., onerror: Any = ...) -> Callable[[_F], _F]: ...

lib: Any
