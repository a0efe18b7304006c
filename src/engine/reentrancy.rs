//! Refusing re-entry: a store method called from inside the closure of
//! `Store::write` on the same store would wait for the engine its own thread
//! holds. Each thread remembers which engines it holds, so such a call
//! returns [`Error::Reentrant`] instead of deadlocking.

use std::cell::RefCell;

use crate::error::{Error, Result};

thread_local! {
    static HELD: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Proof that this thread entered the engine identified by `id`; leaves it
/// on drop.
pub(crate) struct Entered {
    id: usize,
}

impl Entered {
    /// Enters the engine `id`, or refuses when this thread is inside it.
    pub(crate) fn enter(id: usize, operation: &'static str) -> Result<Entered> {
        HELD.with(|held| {
            let mut held = held.borrow_mut();
            if held.contains(&id) {
                return Err(Error::Reentrant { operation });
            }
            held.push(id);
            Ok(Entered { id })
        })
    }

    /// Whether this thread is inside the engine `id`.
    pub(crate) fn is_inside(id: usize) -> bool {
        HELD.with(|held| held.borrow().contains(&id))
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        HELD.with(|held| {
            let mut held = held.borrow_mut();
            if let Some(at) = held.iter().rposition(|&id| id == self.id) {
                held.swap_remove(at);
            }
        });
    }
}
