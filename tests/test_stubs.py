"""What stubtest (ci/typecheck.sh) cannot see through in the compiled modules, checked against their sources.

Cython exposes ``cdef readonly`` and ``cdef public`` fields alike, as descriptors that stubtest cannot tell apart,
and gives a class with ``__cinit__`` a ``__new__`` that takes ``*args, **kwargs``. So these tests read the
.pxd/.pyx sources next to each .pyi: a readonly field must be a read-only property in the stub, a public one an
attribute, and a class built through ``__cinit__`` must take the same arguments in its stub's ``__new__``.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

NATIVE = Path(__file__).resolve().parent.parent / "kafkaprod" / "_native"
STUBS = sorted(NATIVE.glob("*.pyi"))

_CLASS = re.compile(r"^cdef class (\w+)")
_FIELD = re.compile(r"^\s+cdef (readonly|public) .*?(\w+)\s*(?:#.*)?$")
_CINIT = re.compile(r"^cdef class (\w+).*?^\s+def __cinit__\(self,?(.*?)\):", re.M | re.S)


def _fields(pxd: Path) -> dict[str, dict[str, str]]:
    """{class: {field: "readonly" | "public"}} of the cdef classes a .pxd declares."""
    out: dict[str, dict[str, str]] = {}
    cls = None
    for line in pxd.read_text().splitlines():
        m = _CLASS.match(line)
        if m:
            cls = m.group(1)
            continue
        if line and not line[0].isspace():
            cls = None
        m = _FIELD.match(line)
        if m and cls is not None:
            out.setdefault(cls, {})[m.group(2)] = m.group(1)
    return out


def _cinit_args(pyx: Path) -> dict[str, list[str]]:
    """{class: argument names} of the cdef classes whose __cinit__ takes arguments."""
    out = {}
    # One class at a time, so that a __cinit__ is never matched to the class before it.
    for chunk in re.split(r"(?m)^(?=@cython\.final\n|cdef class )", pyx.read_text()):
        m = _CINIT.search(chunk)
        if m and m.group(2).strip():
            args = [a.split("=")[0].split()[-1] for a in m.group(2).replace("\n", " ").split(",") if a.strip()]
            out[m.group(1)] = args
    return out


def _stub_classes(pyi: Path) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in ast.parse(pyi.read_text()).body if isinstance(node, ast.ClassDef)}


def _properties(cls: ast.ClassDef) -> set[str]:
    """Read-only properties: @property getters without a setter."""
    getters, setters = set(), set()
    for node in cls.body:
        if isinstance(node, ast.FunctionDef):
            for dec in node.decorator_list:
                if isinstance(dec, ast.Name) and dec.id == "property":
                    getters.add(node.name)
                elif isinstance(dec, ast.Attribute) and dec.attr == "setter":
                    setters.add(node.name)
    return getters - setters


def _attributes(cls: ast.ClassDef) -> set[str]:
    return {node.target.id for node in cls.body
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}


def test_every_compiled_module_has_a_stub_or_no_python_api() -> None:
    # bulk_input has a stub that says it has no Python API; the .pxd-only modules (clock, batch_header) are C.
    assert {p.stem for p in NATIVE.glob("*.pyx")} == {p.stem for p in STUBS}


@pytest.mark.parametrize("pyi", STUBS, ids=lambda p: p.stem)
def test_readonly_fields_are_properties_and_public_fields_attributes(pyi: Path) -> None:
    pxd = pyi.with_suffix(".pxd")
    if not pxd.exists():
        return
    stubs = _stub_classes(pyi)
    for cls, fields in _fields(pxd).items():
        if cls.startswith("_"):
            continue
        assert cls in stubs, f"{pyi.name}: {cls} has readonly/public fields but no stub"
        props, attrs = _properties(stubs[cls]), _attributes(stubs[cls])
        for name, kind in fields.items():
            if kind == "readonly":
                assert name in props and name not in attrs, \
                    f"{pyi.name}: {cls}.{name} is cdef readonly: it must be a read-only @property in the stub"
            else:
                assert name in attrs and name not in props, \
                    f"{pyi.name}: {cls}.{name} is cdef public: it must be a (writable) attribute in the stub"


@pytest.mark.parametrize("pyi", STUBS, ids=lambda p: p.stem)
def test_cinit_arguments_are_the_stubs_new(pyi: Path) -> None:
    stubs = _stub_classes(pyi)
    for cls, args in _cinit_args(pyi.with_suffix(".pyx")).items():
        if cls.startswith("_"):
            continue
        new = [node for node in stubs[cls].body if isinstance(node, ast.FunctionDef) and node.name == "__new__"]
        assert new, f"{pyi.name}: {cls} is built by __cinit__{tuple(args)}, so its stub needs __new__"
        stub_args = [a.arg for a in new[0].args.args[1:]]
        assert stub_args == args, f"{pyi.name}: {cls}.__new__ takes {stub_args}, __cinit__ takes {args}"
