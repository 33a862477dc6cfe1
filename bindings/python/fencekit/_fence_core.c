/* fencekit._native._FenceCore: the base class of fencekit.Fence, whose `check` and
 * `check_from` are CPython functions (METH_FASTCALL), compiled into cffi's extension after
 * the glue of _build.py (this text is appended to cffi's set_source).
 *
 * Why: a cffi call converts its arguments through cffi's generic machinery and is wrapped in
 * a Python method that unpacks the token; together about 320 ns for a check whose library
 * part takes 4 ns. Here a check with plain arguments reads the integers straight out of the
 * tuple, calls fk_fence_check with the GIL released, and returns a verdict it already holds.
 *
 * The fast path takes exactly: an open fence, a resource id of type int in 0..2**32-1, and a
 * token whose type is tuple or fencekit.Token (no subclass: its __len__, __iter__ or
 * __getitem__ could say anything) holding two values of type int (no subclass, so no bool)
 * in 0..2**64-1; for check_from, a source of type int in 0..2**32-1 or of type str already in
 * the fence's name-to-id dict. Everything else, keywords included, goes to the Python
 * methods `_check_slow` and `_check_from_slow` unchanged: they raise for bad input, with the
 * messages and exception types they always had, or check through the cffi glue. So the
 * fast path decides no error itself: a value outside its ranges is handed over, never
 * clipped or wrapped.
 *
 * What the library answers:
 * - "accepted" (the token is the mark): the verdict of that token from a small per-fence
 *   cache (`accepted`, direct-mapped by the token's integers); on a miss, the Python method
 *   `_accepted_verdict(generation, holder)` makes it. No allocation on a hit.
 * - anything else (another verdict, a failed status such as ForkedError's): the Python method
 *   `_verdict_of(status, kind, current..., previous...)` raises or builds the verdict, from
 *   values on this function's stack (no thread-local in between).
 *
 * Lifetime (the README's promise: closing never frees a library object under a call): the
 * fence is freed by the destructor of `owner`, cffi's pointer (ffi.gc). A check holds a
 * reference to `owner` from before it releases the GIL until after it retook it, so a close()
 * in another thread (which drops `owner` here and in the Python attribute) frees the fence
 * only after the check returned. The library call runs without the GIL, as cffi's calls do:
 * an advance waits for fdatasync, and the library's log callback takes the GIL.
 *
 * Limited API 3.10 (METH_FASTCALL is in it from 3.10): the wheel stays abi3.
 */

#ifdef Py_GIL_DISABLED
/* The verdict cache and the fence's fields are read and replaced under the GIL. */
#error "fencekit: free-threaded CPython is not supported (fencekit/_fence_core.c relies on the GIL)"
#endif

#define FKPY_ACCEPTED_CACHED 64 /* verdicts kept per fence; a power of two */
#define FKPY_U32_MAX 0xFFFFFFFFul

/* PyLong_AsUnsignedLong reads a 64-bit value without the byte-array conversion that
 * PyLong_AsUnsignedLongLong takes for anything above 2**30: this file assumes LP64. */
typedef char fkpy_unsigned_long_is_64_bits[sizeof(unsigned long) == 8 ? 1 : -1];

typedef struct {
    uint64_t generation;
    uint64_t holder;
    /* The accepted verdict of the token (generation, holder), or NULL for an empty slot. */
    PyObject *verdict;
} fkpy_accepted_slot;

typedef struct {
    PyObject_HEAD
    /* The library's fence, or NULL before _open_core and after _close_core.
     * Invariant: NULL exactly when `owner` is NULL. */
    const fk_fence *fence;
    /* cffi's pointer to `fence`, whose destructor frees it. */
    PyObject *owner;
    /* The fence's source ids by name (the dict of Fence._source_ids): check_from looks a
     * name up here before handing it to Python. */
    PyObject *source_ids;
    /* fencekit.Token: the one tuple subclass the fast path takes. */
    PyObject *token_type;
    fkpy_accepted_slot accepted[FKPY_ACCEPTED_CACHED];
} fkpy_core;

/* Set once by fkpy_core_install. */
static PyObject *fkpy_ffi;                 /* the module's `ffi` */
static PyObject *fkpy_name_check_slow;      /* interned method names */
static PyObject *fkpy_name_check_from_slow;
static PyObject *fkpy_core_type;           /* _FenceCore */

/* `value` as an integer in 0..max when its type is int (not a subclass); 0 otherwise, with
 * no exception set. */
static int fkpy_plain_int(PyObject *value, unsigned long max, unsigned long *out) {
    if (!PyLong_CheckExact(value)) {
        return 0;
    }
    unsigned long v = PyLong_AsUnsignedLong(value);
    if (v == (unsigned long)-1 && PyErr_Occurred()) {
        PyErr_Clear(); /* negative or above 2**64 - 1: Python says which */
        return 0;
    }
    if (v > max) {
        return 0;
    }
    *out = v;
    return 1;
}

/* The token's integers when it is a tuple or Token of two plain ints; 0 otherwise, with no
 * exception set. */
static int fkpy_plain_token(fkpy_core *self, PyObject *token, fk_token *out) {
    if (!PyTuple_CheckExact(token) && (PyObject *)Py_TYPE(token) != self->token_type) {
        return 0;
    }
    if (PyTuple_Size(token) != 2) {
        return 0;
    }
    unsigned long generation, holder;
    if (!fkpy_plain_int(PyTuple_GetItem(token, 0), (unsigned long)-1, &generation) ||
        !fkpy_plain_int(PyTuple_GetItem(token, 1), (unsigned long)-1, &holder)) {
        return 0;
    }
    out->generation = generation;
    out->holder = holder;
    return 1;
}

/* self.<name>(*args, **kwargs) from a vectorcall's arguments: the way to the Python methods. */
static PyObject *fkpy_call_python(PyObject *self, PyObject *name, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames) {
    PyObject *method = NULL, *positional = NULL, *keywords = NULL, *result = NULL;
    method = PyObject_GetAttr(self, name);
    if (method == NULL) {
        goto done;
    }
    positional = PyTuple_New(nargs);
    if (positional == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SetItem(positional, i, args[i]); /* steals; cannot fail on a new tuple */
    }
    if (kwnames != NULL) {
        Py_ssize_t count = PyTuple_Size(kwnames);
        keywords = PyDict_New();
        if (keywords == NULL || count < 0) {
            goto done;
        }
        for (Py_ssize_t i = 0; i < count; i++) {
            if (PyDict_SetItem(keywords, PyTuple_GetItem(kwnames, i), args[nargs + i]) < 0) {
                goto done;
            }
        }
    }
    result = PyObject_Call(method, positional, keywords);
done:
    Py_XDECREF(method);
    Py_XDECREF(positional);
    Py_XDECREF(keywords);
    return result;
}

/* The verdict of any answer but "accepted" (or the exception of a failed status), made by
 * Python from the library's verdict. */
static PyObject *fkpy_other_verdict(fkpy_core *self, fk_status status, const fk_verdict *verdict) {
    return PyObject_CallMethod((PyObject *)self, "_verdict_of", "iiKKKK", (int)status, (int)verdict->kind,
                               (unsigned long long)verdict->current.generation,
                               (unsigned long long)verdict->current.holder,
                               (unsigned long long)verdict->previous.generation,
                               (unsigned long long)verdict->previous.holder);
}

/* The accepted verdict of `token`: from the cache, else made by Python and kept. */
static PyObject *fkpy_accepted_verdict(fkpy_core *self, fk_token token) {
    uint64_t mixed = (token.generation * 0x9E3779B97F4A7C15ull) ^ token.holder;
    fkpy_accepted_slot *slot = &self->accepted[(mixed ^ (mixed >> 29)) & (FKPY_ACCEPTED_CACHED - 1)];
    if (slot->verdict != NULL && slot->generation == token.generation && slot->holder == token.holder) {
        Py_INCREF(slot->verdict);
        return slot->verdict;
    }
    PyObject *verdict = PyObject_CallMethod((PyObject *)self, "_accepted_verdict", "KK",
                                            (unsigned long long)token.generation,
                                            (unsigned long long)token.holder);
    if (verdict == NULL) {
        return NULL;
    }
    /* The slot is replaced whole before the old verdict goes (its release could run Python
     * code, which could check again and see a half-written slot otherwise). */
    PyObject *old = slot->verdict;
    Py_INCREF(verdict);
    slot->generation = token.generation;
    slot->holder = token.holder;
    slot->verdict = verdict;
    Py_XDECREF(old);
    return verdict;
}

/* One check of plain arguments: `from_source` says whether `source` names a source
 * (check_from) or not (check). A closed fence hands the call (`args`) to Python's `slow`,
 * which raises ClosedError: tested here, right before the fence is used, since the Python
 * code a source name's lookup can run (a str subclass's __eq__) may have closed it. */
static PyObject *fkpy_run(fkpy_core *self, PyObject *slow, PyObject *const *args, Py_ssize_t nargs,
                          uint32_t resource, int from_source, uint32_t source, fk_token token) {
    if (self->fence == NULL) {
        return fkpy_call_python((PyObject *)self, slow, args, nargs, NULL);
    }
    /* Held until the library returned: see "Lifetime" above. */
    PyObject *owner = self->owner;
    const fk_fence *fence = self->fence;
    Py_INCREF(owner);
    fk_verdict verdict;
    fk_status status;
    Py_BEGIN_ALLOW_THREADS
    status = from_source ? fk_fence_check_from(fence, resource, source, token, &verdict)
                         : fk_fence_check(fence, resource, token, &verdict);
    Py_END_ALLOW_THREADS
    PyObject *result = status == FK_STATUS_OK && verdict.kind == FK_VERDICT_ACCEPTED
                           ? fkpy_accepted_verdict(self, token)
                           : fkpy_other_verdict(self, status, &verdict);
    Py_DECREF(owner);
    return result;
}

static PyObject *fkpy_core_check(PyObject *op, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    fkpy_core *self = (fkpy_core *)op;
    unsigned long resource;
    fk_token token;
    if (kwnames != NULL || nargs != 2 || !fkpy_plain_int(args[0], FKPY_U32_MAX, &resource) ||
        !fkpy_plain_token(self, args[1], &token)) {
        return fkpy_call_python(op, fkpy_name_check_slow, args, nargs, kwnames);
    }
    return fkpy_run(self, fkpy_name_check_slow, args, nargs, (uint32_t)resource, 0, 0, token);
}

static PyObject *fkpy_core_check_from(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                                      PyObject *kwnames) {
    fkpy_core *self = (fkpy_core *)op;
    unsigned long resource, source;
    fk_token token;
    if (kwnames != NULL || nargs != 3 || self->source_ids == NULL) {
        return fkpy_call_python(op, fkpy_name_check_from_slow, args, nargs, kwnames);
    }
    if (PyUnicode_CheckExact(args[1])) {
        /* A name: its id if this fence gave one (Python asks the library for a new name). A
         * failing lookup (a key's __eq__ raising) raises, as Python's dict.get would. */
        PyObject *known = PyDict_GetItemWithError(self->source_ids, args[1]);
        if (known == NULL && PyErr_Occurred()) {
            return NULL;
        }
        if (known == NULL || !fkpy_plain_int(known, FKPY_U32_MAX, &source)) {
            return fkpy_call_python(op, fkpy_name_check_from_slow, args, nargs, kwnames);
        }
    } else if (!fkpy_plain_int(args[1], FKPY_U32_MAX, &source)) {
        return fkpy_call_python(op, fkpy_name_check_from_slow, args, nargs, kwnames);
    }
    if (!fkpy_plain_int(args[0], FKPY_U32_MAX, &resource) || !fkpy_plain_token(self, args[2], &token)) {
        return fkpy_call_python(op, fkpy_name_check_from_slow, args, nargs, kwnames);
    }
    return fkpy_run(self, fkpy_name_check_from_slow, args, nargs, (uint32_t)resource, 1, (uint32_t)source,
                    token);
}

/* The fence a cffi `fk_fence *` points to (checked with ffi.typeof, so only what cffi itself
 * would pass to the library as a fence gets here); NULL with an exception otherwise. */
static const fk_fence *fkpy_fence_of(PyObject *owner) {
    PyObject *type = NULL, *expected = NULL, *address = NULL, *number = NULL;
    void *fence = NULL;
    type = PyObject_CallMethod(fkpy_ffi, "typeof", "O", owner); /* TypeError if not cdata */
    if (type == NULL) {
        goto done;
    }
    expected = PyObject_CallMethod(fkpy_ffi, "typeof", "s", "fk_fence *");
    if (expected == NULL) {
        goto done;
    }
    int same = PyObject_RichCompareBool(type, expected, Py_EQ);
    if (same <= 0) {
        if (same == 0) {
            PyErr_SetString(PyExc_TypeError, "owner is a cffi fk_fence *");
        }
        goto done;
    }
    address = PyObject_CallMethod(fkpy_ffi, "cast", "sO", "uintptr_t", owner);
    if (address == NULL) {
        goto done;
    }
    number = PyNumber_Long(address); /* int() of a cffi integer */
    if (number == NULL) {
        goto done;
    }
    fence = PyLong_AsVoidPtr(number);
    if (fence == NULL && !PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "owner is NULL");
    }
done:
    Py_XDECREF(type);
    Py_XDECREF(expected);
    Py_XDECREF(address);
    Py_XDECREF(number);
    return fence;
}

/* _open_core(owner, source_ids, token_type): binds the fence `owner` points to (cffi's
 * pointer, whose destructor frees it), the fence's name-to-source-id dict and the Token type.
 * Binding again (Fence.__init__ called again) drops what was bound before. */
static PyObject *fkpy_core_open(PyObject *op, PyObject *const *args, Py_ssize_t nargs) {
    fkpy_core *self = (fkpy_core *)op;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_open_core(owner, source_ids, token_type) takes 3 arguments");
        return NULL;
    }
    PyObject *owner = args[0], *source_ids = args[1], *token_type = args[2];
    if (!PyDict_CheckExact(source_ids)) {
        PyErr_SetString(PyExc_TypeError, "source_ids is a dict");
        return NULL;
    }
    if (!PyType_Check(token_type) || !PyType_IsSubtype((PyTypeObject *)token_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "token_type is a subclass of tuple");
        return NULL;
    }
    const fk_fence *fence = fkpy_fence_of(owner);
    if (fence == NULL) {
        return NULL;
    }
    /* Every field is set before the old values go: releasing them can run code (freeing the
     * former fence) that must find this object whole. */
    PyObject *old_owner = self->owner, *old_ids = self->source_ids, *old_type = self->token_type;
    Py_INCREF(owner);
    Py_INCREF(source_ids);
    Py_INCREF(token_type);
    self->owner = owner;
    self->source_ids = source_ids;
    self->token_type = token_type;
    self->fence = fence;
    Py_XDECREF(old_owner);
    Py_XDECREF(old_ids);
    Py_XDECREF(old_type);
    Py_RETURN_NONE;
}

static int fkpy_core_clear(PyObject *op) {
    fkpy_core *self = (fkpy_core *)op;
    self->fence = NULL;
    Py_CLEAR(self->owner);
    Py_CLEAR(self->source_ids);
    Py_CLEAR(self->token_type);
    for (int i = 0; i < FKPY_ACCEPTED_CACHED; i++) {
        Py_CLEAR(self->accepted[i].verdict);
    }
    return 0;
}

/* _close_core(): drops the fence (freed when the last check holding it returns). Calls after
 * it go to Python, which raises ClosedError. */
static PyObject *fkpy_core_close(PyObject *op, PyObject *unused) {
    (void)unused;
    fkpy_core *self = (fkpy_core *)op;
    PyObject *owner = self->owner;
    self->fence = NULL; /* first: no check starts on a fence being dropped */
    self->owner = NULL;
    Py_XDECREF(owner);
    Py_RETURN_NONE;
}

static int fkpy_core_traverse(PyObject *op, visitproc visit, void *arg) {
    fkpy_core *self = (fkpy_core *)op;
    Py_VISIT(Py_TYPE(op)); /* a heap type's instances own their type */
    Py_VISIT(self->owner);
    Py_VISIT(self->source_ids);
    Py_VISIT(self->token_type);
    for (int i = 0; i < FKPY_ACCEPTED_CACHED; i++) {
        Py_VISIT(self->accepted[i].verdict);
    }
    return 0;
}

static void fkpy_core_dealloc(PyObject *op) {
    PyTypeObject *type = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    fkpy_core_clear(op);
    freefunc free_object = (freefunc)PyType_GetSlot(type, Py_tp_free);
    free_object(op);
    Py_DECREF(type);
}

static PyMethodDef fkpy_core_methods[] = {
    {"check", (PyCFunction)(void (*)(void))fkpy_core_check, METH_FASTCALL | METH_KEYWORDS,
     "check($self, resource, token)\n--\n\n"
     "Checks `token` for the resource id `resource` (the hot path). The verdict is true\n"
     "exactly when the write may land. A token is a `Token` or a pair of ints; anything\n"
     "else (a bool, a float, a string) raises TypeError."},
    {"check_from", (PyCFunction)(void (*)(void))fkpy_core_check_from, METH_FASTCALL | METH_KEYWORDS,
     "check_from($self, resource, source, token)\n--\n\n"
     "Checks `token`, minted by the coordinator `source` (its name, as\n"
     "`fencekit.zookeeper_source(\"prod-zk\")`, or its id from `source_id`), for the resource\n"
     "id `resource`, as `check` does for fencekit's own tokens. A resource takes tokens from\n"
     "one source, the one of its first accepted token (or of a `rebase`): a token of any\n"
     "other source, `check`'s included, is refused with \"foreign_source\" whatever its\n"
     "numbers. The verdict is true exactly when the write may land."},
    {"_open_core", (PyCFunction)(void (*)(void))fkpy_core_open, METH_FASTCALL,
     "Binds the fence (a cffi fk_fence *), its source-id dict and the Token type."},
    {"_close_core", fkpy_core_close, METH_NOARGS, "Drops the fence: later checks go to Python."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot fkpy_core_slots[] = {
    {Py_tp_doc, "The compiled part of fencekit.Fence: its check and check_from."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, fkpy_core_dealloc},
    {Py_tp_traverse, fkpy_core_traverse},
    {Py_tp_clear, fkpy_core_clear},
    {Py_tp_methods, fkpy_core_methods},
    {0, NULL},
};

static PyType_Spec fkpy_core_spec = {
    "fencekit._native._FenceCore",
    sizeof(fkpy_core),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    fkpy_core_slots,
};

/* Creates the type and sets it as `_FenceCore` on the module imported as `module_name` (this
 * extension, as fencekit/fence.py imported it). Called through cffi, which released the GIL:
 * takes it. 0 on success; -1 after printing the Python error. Idempotent. */
static int fkpy_core_install(const char *module_name) {
    PyGILState_STATE gil = PyGILState_Ensure();
    int result = -1;
    PyObject *module = NULL;
    module = PyImport_ImportModule(module_name);
    if (module == NULL) {
        goto done;
    }
    if (fkpy_ffi == NULL) {
        fkpy_ffi = PyObject_GetAttrString(module, "ffi");
        fkpy_name_check_slow = PyUnicode_InternFromString("_check_slow");
        fkpy_name_check_from_slow = PyUnicode_InternFromString("_check_from_slow");
        if (fkpy_ffi == NULL || fkpy_name_check_slow == NULL || fkpy_name_check_from_slow == NULL) {
            Py_CLEAR(fkpy_ffi);
            goto done;
        }
    }
    if (fkpy_core_type == NULL) {
        fkpy_core_type = PyType_FromSpec(&fkpy_core_spec);
        if (fkpy_core_type == NULL) {
            goto done;
        }
    }
    if (PyObject_SetAttrString(module, "_FenceCore", fkpy_core_type) < 0) {
        goto done;
    }
    result = 0;
done:
    Py_XDECREF(module);
    if (result < 0) {
        PyErr_Print();
    }
    PyGILState_Release(gil);
    return result;
}
