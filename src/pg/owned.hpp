// C++ objects whose lifetime is tied to a PostgreSQL memory context: the
// object is deleted when the context is reset or deleted, which includes
// error cleanup after an ereport. So glue code may keep a C++ object alive
// across PostgreSQL calls that can ereport without leaking it.
#pragma once

#include "pg/pg.hpp"

#include <new>

namespace ajpg {

template <typename T>
void delete_owned(void *arg) {
  delete static_cast<T *>(arg);
}

// Returns a new T owned by `cxt`, or raises ERROR (out of memory).
template <typename T>
T *make_owned(MemoryContext cxt) {
  MemoryContextCallback *cb =
      (MemoryContextCallback *)MemoryContextAllocZero(cxt, sizeof(MemoryContextCallback));
  T *obj = new (std::nothrow) T();
  if (obj == nullptr) ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
  cb->func = delete_owned<T>;
  cb->arg = obj;
  MemoryContextRegisterResetCallback(cxt, cb);
  return obj;
}

}  // namespace ajpg
