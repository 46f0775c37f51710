//! locks: taking a lock that a panic elsewhere left poisoned.
//!
//! mfawatch keeps going with the data behind a poisoned lock (a panicking
//! HTTP handler must not stop the pipeline); where a half-done change would
//! matter, the owner marks itself so (the checkpointer refuses to write a
//! state a panic left half-updated). This module knows nothing else.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

pub fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
