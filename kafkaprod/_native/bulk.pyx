# cython: language_level=3
"""The send_batch() engine: a whole list or array of records appended in one call, with one BatchFuture.

Every record is checked first (types and sizes, bulk_input.pxd reads them without a Python object per record);
then records are partitioned (fixed, murmur2 of the key, or uniform sticky) and encoded straight into the
partitions' open batches in C. Stretches of records bound for one partition go through the builder's run append;
memory for new batches comes from the accumulator's pool outside its critical section, since it may block.
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from libc.stdint cimport int32_t, int64_t

from kafkaprod._native.accumulator cimport RecordAccumulator
from kafkaprod._native.partition_state cimport PartitionState, TopicState
from kafkaprod._native.batch cimport ProducerBatch
from kafkaprod._native.batch_future cimport BatchFuture, extend_runs
from kafkaprod._native.bulk_input cimport (
    SRC_LIST, SRC_NONE, SRC_ROWS, SRC_TUPLE, Source, close_source, open_source, read_item,
)
from kafkaprod._native.checks cimport check_in_range, partition_of, timestamp_of
from kafkaprod._native.future cimport ProduceRequestResult
from kafkaprod._native.headers cimport encode_headers
from kafkaprod._native.murmur2 cimport murmur2, partition_for
from kafkaprod._native.records cimport (
    MemoryRecordsBuilder, builder_count, builder_is_full, size_upper_bound,
)

from kafkaprod.errors import ProducerClosedError

cdef extern from "Python.h":
    PyObject* _list_get "PyList_GET_ITEM" (object lst, Py_ssize_t i) noexcept
    PyObject** _fast_items "PySequence_Fast_ITEMS" (object seq) noexcept
    PyObject* _type_of "(PyObject*)Py_TYPE" (PyObject* o) noexcept
    PyObject* _bytes_type "((PyObject*)&PyBytes_Type)"
    Py_ssize_t _bytes_size "PyBytes_GET_SIZE" (PyObject* o) noexcept
    char* _bytes_str "PyBytes_AS_STRING" (PyObject* o) noexcept
    Py_ssize_t _fast_size_of "PySequence_Fast_GET_SIZE" (PyObject* o) noexcept
    PyObject* _none "Py_None"


def append_batch(RecordAccumulator acc, str topic, values, keys=None, partition=None, timestamp_ms=None,
                 headers=None, partitions=None):
    """Appends a whole send_batch() call to the accumulator and returns its BatchFuture; the topic's metadata
    must be known.

    values/keys: see KafkaProducer.send_batch. partitions (for the producer's slow path): None, or one int
    (or None: built-in partitioner) per record. Everything is checked before the first record is appended;
    a failure after that (no buffer memory within max_block_ms, the producer closed) raises with
    `records_appended` and `future` (for those records) set on the error.
    """
    cdef TopicState st = acc.topic_for_append(topic, "send_batch()")
    cdef Source vsrc, ksrc
    cdef Py_ssize_t n, i, hlen = 0
    cdef int nparts, fixed
    cdef int32_t* parr = NULL
    cdef int64_t ts = timestamp_of(timestamp_ms)
    cdef const unsigned char* hp = NULL
    cdef bytes hblob = None
    cdef BatchFuture fut
    # The partition count is fixed for the call, so that every key of one call is hashed over the same count.
    nparts = st.num_partitions
    fixed = partition_of(partition)
    if fixed >= 0:
        check_in_range(fixed, topic, nparts)
    if headers is not None:
        hblob = encode_headers(headers)
        if len(hblob) > 1:  # b"\x00" (no headers) needs no copy per record
            hp = <const unsigned char*>PyBytes_AS_STRING(hblob)
            hlen = len(hblob)
    vsrc.has_view = False
    ksrc.has_view = False
    try:
        open_source(&vsrc, values, False)
        open_source(&ksrc, keys, True)
        n = vsrc.n
        if ksrc.n >= 0 and ksrc.n != n:
            raise ValueError(f"keys has {ksrc.n} items but values has {n}; give one key per value, or None")
        if partitions is not None:
            if len(partitions) != n:
                raise ValueError(f"partitions has {len(partitions)} items but values has {n}")
            parr = <int32_t*>PyMem_Malloc((n if n > 0 else 1) * sizeof(int32_t))
            if parr == NULL:
                raise MemoryError()
            for i in range(n):
                q = partitions[i]
                if q is None:
                    parr[i] = -1
                elif type(q) is not int or not 0 <= q < nparts:
                    raise ValueError(f"partition {q!r} chosen for record {i} is out of range for topic {topic!r}, "
                                     f"which has {nparts} partitions (0-{nparts - 1})")
                else:
                    parr[i] = q
        fut = BatchFuture.create(topic, n, ts, nparts, acc.acknowledge)
        _check_records(acc, &vsrc, &ksrc, n, hlen if hp != NULL else 1, fut)
        return _append_all(acc, st, fut, &vsrc, &ksrc, n, nparts, fixed, parr, ts, hp, hlen)
    finally:
        PyMem_Free(parr)
        close_source(&ksrc)
        close_source(&vsrc)


cdef inline PyObject** _items_of(Source* src, Py_ssize_t n) noexcept:
    """The item array of a list or tuple input still holding n items, else NULL (read through read_item)."""
    if (src.kind == SRC_LIST or src.kind == SRC_TUPLE) and _fast_size_of(src.obj) >= n:
        return _fast_items(<object>src.obj)
    return NULL


cdef inline int _read_fast(Source* src, PyObject** items, Py_ssize_t i, const unsigned char** ptr,
                           Py_ssize_t* length) except -1:
    # read_item, with the common item -- exact bytes in a list or tuple -- read straight from the item array.
    cdef PyObject* o
    if items != NULL:
        o = items[i]
        if _type_of(o) == _bytes_type:
            ptr[0] = <const unsigned char*>_bytes_str(o)
            length[0] = _bytes_size(o)
            return 0
    return read_item(src, i, ptr, length)


cdef Py_ssize_t _scan_sizes(Source* src, Py_ssize_t n, BatchFuture fut, bint keys) except -1:
    """Checks every item of a send_batch() input (bytes or None) and records the sizes in the future: one size
    for all, or an array once they differ. Returns the largest size (0 for none)."""
    cdef Py_ssize_t i, j, length, largest = 0
    cdef int32_t first = -1
    cdef int32_t* sizes = NULL
    cdef const unsigned char* ptr
    cdef PyObject* o
    cdef PyObject** items = NULL
    if src.kind == SRC_ROWS:
        first = <int32_t>src.row_size
        largest = src.row_size
    elif src.kind != SRC_NONE:
        if src.kind == SRC_LIST or src.kind == SRC_TUPLE:
            if len(<object>src.obj) < n:  # Python code ran since the input was opened (a buffer export, say)
                raise RuntimeError(f"{'keys' if keys else 'values'} was changed by another thread during send_batch()")
            items = _fast_items(<object>src.obj)
        for i in range(n):
            # Exact bytes, the common item, without the general reader; everything else through it.
            o = items[i] if items != NULL else NULL
            if o != NULL and _type_of(o) == _bytes_type:
                length = _bytes_size(o)
            else:
                read_item(src, i, &ptr, &length)
            if i == 0:
                first = <int32_t>length
            if sizes != NULL:
                sizes[i] = <int32_t>length
            elif length != first:
                sizes = fut.sizes_array(keys)
                for j in range(i):
                    sizes[j] = first
                sizes[i] = <int32_t>length
            if length > largest:
                largest = length
    fut.set_common_size(keys, first)
    return largest


cdef int _check_records(RecordAccumulator acc, Source* vsrc, Source* ksrc, Py_ssize_t n, Py_ssize_t hpart,
                        BatchFuture fut) except -1:
    # Every record is checked before the first is appended: types, sizes against max_request_size and
    # buffer_memory. Sizes go into the future (arrays only when they differ between records).
    cdef Py_ssize_t i, kl = -1, vl = -1
    cdef Py_ssize_t vmax = _scan_sizes(vsrc, n, fut, False)
    cdef Py_ssize_t kmax = _scan_sizes(ksrc, n, fut, True)
    cdef const unsigned char* kp
    cdef const unsigned char* vp
    if kmax + vmax + hpart + 128 <= acc.size_fast_limit:
        return 0  # 128 bytes cover the batch header and a record's own overhead: even the largest fits
    for i in range(n):
        read_item(vsrc, i, &vp, &vl)
        read_item(ksrc, i, &kp, &kl)
        acc.check_record_size(size_upper_bound(kl, vl, hpart), f"record {i}")
    return 0


cdef inline bint _open_builder(list partitions, int p, PyObject** cur_builder, PyObject** cur_result) noexcept:
    """Whether partition p has a batch open for appends; caches its builder and result for the section."""
    cdef PyObject* ob
    if cur_builder[p] != NULL:
        return True
    ob = <PyObject*>(<PartitionState>_list_get(partitions, p)).open_batch
    if ob == _none or (<ProducerBatch>ob).closed_for_append:
        return False
    cur_builder[p] = <PyObject*>(<ProducerBatch>ob).builder
    cur_result[p] = <PyObject*>(<ProducerBatch>ob).result
    return True


cdef BatchFuture _append_all(RecordAccumulator acc, TopicState st, BatchFuture fut, Source* vsrc, Source* ksrc,
                             Py_ssize_t n, int nparts, int fixed, int32_t* parr, int64_t ts,
                             const unsigned char* hp, Py_ssize_t hlen):
    cdef Py_ssize_t i = 0, kl = -1, vl = -1, size
    cdef const unsigned char* kp
    cdef const unsigned char* vp
    cdef int p, q, pending_p = -1, d
    cdef bint wake, handed_over
    cdef ProducerBatch batch
    cdef list partitions = st.partitions
    cdef int batch_size = acc.batch_size
    cdef Py_ssize_t hpart = hlen if hp != NULL else 1
    cdef PyObject* last = NULL
    cdef bint run_ok = fixed >= 0 or (ksrc.kind == SRC_NONE and parr == NULL)
    cdef PyObject** vitems
    cdef PyObject** kitems
    cdef Py_ssize_t budget, cnt
    cdef int32_t d0
    cdef int why
    # Per partition, the open batch's builder and result while inside one critical section: borrowed from the
    # partitions' open batches, which nothing can change before the section ends, so the loop takes no references.
    cdef PyObject** cur_builder = <PyObject**>PyMem_Malloc(nparts * sizeof(PyObject*))
    cdef PyObject** cur_result = <PyObject**>PyMem_Malloc(nparts * sizeof(PyObject*))
    if cur_builder == NULL or cur_result == NULL:
        PyMem_Free(cur_builder)
        PyMem_Free(cur_result)
        raise MemoryError()
    try:
        while i < n:
            wake = False
            d = -1
            with cython.critical_section(acc):
                if acc.appends_gated:
                    raise acc.refusal("send_batch()")
                if acc.closed:
                    raise ProducerClosedError("the producer was closed during send_batch()")
                for q in range(nparts):
                    cur_builder[q] = NULL
                # Item arrays of list/tuple inputs, for this section (Python code may run between sections).
                vitems = _items_of(vsrc, n)
                kitems = _items_of(ksrc, n)
                while i < n:
                    if run_ok and pending_p < 0:
                        # One partition for a stretch of records (fixed, or keyless and sticky): append them
                        # in one builder call. What it cannot take goes through the per-record code below.
                        p = fixed if fixed >= 0 else st.sticky_partition
                        if p >= 0 and _open_builder(partitions, p, cur_builder, cur_result):
                            budget = batch_size - st.sticky_bytes
                            d0 = builder_count(<MemoryRecordsBuilder>cur_builder[p])
                            cnt = (<MemoryRecordsBuilder>cur_builder[p]).append_run(
                                ts, vsrc, ksrc, i, n, hp, hlen, NULL if fixed >= 0 else &budget, &why)
                            if cnt > 0:
                                fut.add_run(p, <ProduceRequestResult>cur_result[p], d0, cnt)
                                i += cnt
                                last = cur_builder[p]
                            if fixed < 0:
                                if why == 2:
                                    st.sticky_bytes = 0
                                    st.sticky_partition = st.next_sticky(p)
                                else:
                                    st.sticky_bytes = batch_size - budget
                            if why == 0 or why == 2:
                                continue
                    _read_fast(vsrc, vitems, i, &vp, &vl)
                    _read_fast(ksrc, kitems, i, &kp, &kl)
                    if pending_p >= 0:
                        p = pending_p  # chosen before this record had to wait for a new batch
                    elif fixed >= 0:
                        p = fixed
                    elif parr != NULL and parr[i] >= 0:
                        p = parr[i]
                    elif kp != NULL:
                        p = partition_for(murmur2(kp, kl), nparts)
                    elif st.sticky_partition >= 0:
                        # sticky_for, inline (a call per record costs as much as the rest of the choice).
                        p = st.sticky_partition
                        st.sticky_bytes += (vl if vl > 0 else 0) + (kl if kl > 0 else 0) + 8
                        if st.sticky_bytes >= batch_size:
                            st.sticky_bytes = 0
                            st.sticky_partition = st.next_sticky(p)
                    else:
                        p = st.sticky_for(kl, vl, batch_size)
                    if not _open_builder(partitions, p, cur_builder, cur_result):
                        pending_p = p
                        break
                    d = (<MemoryRecordsBuilder>cur_builder[p]).append_bulk(ts, kp, kl, vp, vl, hp, hlen)
                    if d < 0 and acc.grow((<PartitionState>partitions[p]).open_batch, size_upper_bound(kl, vl, hpart)):
                        # The batch started small and moved to a larger buffer (the builder is the same object).
                        d = (<MemoryRecordsBuilder>cur_builder[p]).append_bulk(ts, kp, kl, vp, vl, hp, hlen)
                    if d < 0:
                        pending_p = p
                        break
                    # Most records extend the future's last run (same batch, next offset) or, keyed, start a
                    # run in a batch the future already knows: no call for those.
                    if not extend_runs(fut, p, cur_result[p], i, d):
                        fut.add_record(p, <ProduceRequestResult>cur_result[p], d)
                    pending_p = -1
                    last = cur_builder[p]
                    i += 1
                # A batch filled up without the next record having to start another: the Sender should know.
                if last != NULL and builder_is_full(<MemoryRecordsBuilder>last):
                    wake = True
                last = NULL
            if wake:
                acc.wake()
            if i >= n:
                break
            # Record i needs a new batch on partition pending_p. Memory comes from outside the critical
            # section, since the pool may block (with the GIL released) until the Sender frees batches.
            read_item(vsrc, i, &vp, &vl)
            read_item(ksrc, i, &kp, &kl)
            size = max(size_upper_bound(kl, vl, hpart), acc.first_size(<PartitionState>partitions[pending_p]))
            buf = acc.allocate(size, "send_batch()")
            handed_over = False
            try:
                with cython.critical_section(acc):
                    if acc.appends_gated:
                        raise acc.refusal("send_batch()")
                    if acc.closed:
                        raise ProducerClosedError("the producer was closed while send_batch() waited for memory")
                    # The wait may have let other threads run: read the record again.
                    read_item(vsrc, i, &vp, &vl)
                    read_item(ksrc, i, &kp, &kl)
                    p = pending_p
                    batch = (<PartitionState>partitions[p]).open_batch
                    d = -1
                    if batch is not None and not batch.closed_for_append:
                        d = batch.builder.append_bulk(ts, kp, kl, vp, vl, hp, hlen)
                    if d < 0:
                        batch = acc.new_batch(st, p, buf, size)
                        d = batch.builder.append_bulk(ts, kp, kl, vp, vl, hp, hlen)
                        if d < 0:
                            raise RuntimeError(f"record {i} does not fit a new batch of {size} bytes (was the "
                                               f"values/keys sequence changed during send_batch()?)")
                        acc.add_batch(st, batch)
                        handed_over = True
                    # else: another thread made a batch meanwhile; our buffer goes back below
                    fut.add_record(p, batch.result, d)
                    pending_p = -1
                    i += 1
            finally:
                if not handed_over:
                    acc.free(buf, size)
            acc.wake_for(batch)
    except BaseException as exc:
        # Out of memory for max_block_ms, closed, interrupted, or an input changed by another thread meanwhile:
        # records 0..i-1 are in batches and will be sent, and the error says so.
        fut.arm()
        try:
            exc.records_appended = i
            exc.future = fut
        except AttributeError:  # an exception type without a __dict__
            pass
        raise
    finally:
        PyMem_Free(cur_builder)
        PyMem_Free(cur_result)
    fut.arm()
    return fut
