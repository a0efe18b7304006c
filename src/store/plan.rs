//! Dry runs: [`Store::plan`] runs one of the store's writes through the
//! real write path — the same transaction, catch-up, closure, tree-shape
//! triggers and validators — and rolls it back instead of committing, so
//! the plan says exactly what the write would change, or why it would be
//! refused.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::Transaction;
use serde_json::Value;

use crate::db::history::{RowText, rows_from};
use crate::error::{Error, Result};
use crate::store::Store;

/// One key a write would change (or that changed between two points, see
/// [`Store::diff`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PlannedChange {
    /// The key.
    pub key: String,
    /// Its value before (`None`: the key does not exist; it is added).
    pub old: Option<Value>,
    /// Its value after (`None`: the key is removed).
    pub new: Option<Value>,
}

impl PlannedChange {
    /// Its value before (`None`: it is added).
    pub fn old_value(&self) -> Option<&Value> {
        self.old.as_ref()
    }

    /// Its value after (`None`: it is removed).
    pub fn new_value(&self) -> Option<&Value> {
        self.new.as_ref()
    }

    /// Whether the key is removed.
    pub fn is_removal(&self) -> bool {
        self.new.is_none()
    }

    /// Whether the key is added.
    pub fn is_addition(&self) -> bool {
        self.old.is_none()
    }
}

/// What a write would do, from [`Store::plan`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Plan {
    /// The keys the write would change, by key, each once (first old value,
    /// last new value; keys it wrote back unchanged are left out). When the
    /// write is refused, the changes it had made before the refusal (none
    /// when its own checks refused it before writing).
    pub changes: Vec<PlannedChange>,
    /// Why the write would be refused ([`Error::Rejected`] by a validator
    /// or rule, [`Error::Conflict`] / [`Error::Misplaced`] by the tree's
    /// shape, [`Error::InvalidKey`], [`Error::InvalidValue`]), if it would.
    pub refused: Option<Error>,
}

impl Plan {
    /// Whether the write would be refused.
    pub fn is_refused(&self) -> bool {
        self.refused.is_some()
    }
}

type Rows = Vec<RowText>;

struct Planning {
    core: usize,
    writes: usize,
    rows: Rows,
}

thread_local! {
    /// The plans running on this thread, innermost last (one per store).
    static PLANS: RefCell<Vec<Planning>> = const { RefCell::new(Vec::new()) };
}

/// Ends a plan even when its closure panics.
struct PlanGuard {
    core: usize,
}

impl PlanGuard {
    fn take_rows(&self) -> Rows {
        PLANS.with(|plans| {
            plans
                .borrow_mut()
                .iter_mut()
                .rev()
                .find(|plan| plan.core == self.core)
                .map(|plan| std::mem::take(&mut plan.rows))
                .unwrap_or_default()
        })
    }
}

impl Drop for PlanGuard {
    fn drop(&mut self) {
        PLANS.with(|plans| {
            let mut plans = plans.borrow_mut();
            if let Some(at) = plans.iter().rposition(|plan| plan.core == self.core) {
                plans.remove(at);
            }
        });
    }
}

/// Called by the engine as a write begins: whether it is a dry run (this
/// thread runs a plan on the store `core`). A plan covers one write.
pub(crate) fn begin_write(core: usize) -> Result<bool> {
    PLANS.with(|plans| {
        let mut plans = plans.borrow_mut();
        let Some(plan) = plans.iter_mut().rev().find(|plan| plan.core == core) else {
            return Ok(false);
        };
        if plan.writes > 0 {
            return Err(Error::InvalidOption {
                option: "plan",
                reason: "a plan covers one write (a second one would not see the first, which \
                         was rolled back): plan them as one write, e.g. one merge"
                    .to_owned(),
            });
        }
        plan.writes += 1;
        Ok(true)
    })
}

/// Called by the engine inside a dry run's transaction: records the log
/// rows the write made (from seq `first` on).
pub(crate) fn record(
    core: usize,
    tx: &Transaction<'_>,
    path: &Path,
    first: Option<i64>,
) -> Result<()> {
    let rows = match first {
        Some(first) => rows_from(tx, path, first)?,
        None => Vec::new(),
    };
    PLANS.with(|plans| {
        if let Some(plan) = plans
            .borrow_mut()
            .iter_mut()
            .rev()
            .find(|plan| plan.core == core)
        {
            plan.rows = rows;
        }
    });
    Ok(())
}

/// Whether `error` says the write itself is refused (rather than that it
/// could not be tried).
fn is_refusal(error: &Error) -> bool {
    matches!(
        error,
        Error::Rejected { .. }
            | Error::Conflict { .. }
            | Error::Misplaced { .. }
            | Error::InvalidKey { .. }
            | Error::InvalidValue { .. }
    )
}

/// A stored JSON text as a value (text that is not JSON as a string, as
/// the history shows it).
pub(crate) fn decode(key: &str, text: String) -> Value {
    crate::value::parse_stored_text(key, &text).unwrap_or(Value::String(text))
}

/// One change per key: its first old value and its last new one, unchanged
/// keys left out, sorted by key.
fn collapse(rows: Rows) -> Vec<PlannedChange> {
    let mut by_key: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    for (key, old, new) in rows {
        by_key
            .entry(key)
            .and_modify(|(_, last)| last.clone_from(&new))
            .or_insert((old, new));
    }
    by_key
        .into_iter()
        .filter_map(|(key, (old, new))| {
            let old = old.map(|text| decode(&key, text));
            let new = new.map(|text| decode(&key, text));
            (old != new).then_some(PlannedChange { key, old, new })
        })
        .collect()
}

impl Store {
    /// Runs `op` — one write of this store (`set`, `unset`, `merge`,
    /// `revert_to`, `write`, ...) — as a dry run: through the real write
    /// path, with every check the write would get (key rules, the tree's
    /// shape, validators and rules), then rolled back. Nothing is written
    /// or published; the plan lists what would change, or why the write
    /// would be refused.
    ///
    /// The dry run takes SQLite's write lock for as long as the write
    /// itself would (`BEGIN IMMEDIATE` ... `ROLLBACK`), so it is exact: it
    /// sees every earlier commit and no other writer can commit meanwhile.
    /// A very large write may spill uncommitted pages into the `-wal` file
    /// (never into the database, never as a commit).
    ///
    /// The value `op` returns for its write (a [`Commit`](crate::Commit))
    /// describes no commit and is dropped. Only writes `op` makes on the
    /// calling thread, through this store, are dry runs.
    ///
    /// # Errors
    /// What stopped the write from being tried ([`Error::Busy`],
    /// [`Error::ReadOnly`], [`Error::UnknownSeq`], ...), and
    /// [`Error::InvalidOption`] when `op` makes a second write.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = livesettings::Store::open(dir.path().join("s.db"))?;
    /// store.set("app.port", &80)?;
    /// let plan = store.plan(|store| store.set("app.port", &8080))?;
    /// assert_eq!(plan.changes[0].old, Some(serde_json::json!(80)));
    /// assert_eq!(plan.changes[0].new, Some(serde_json::json!(8080)));
    /// assert!(!plan.is_refused());
    /// assert_eq!(store.get::<i64>("app.port")?, Some(80));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn plan<R>(&self, op: impl FnOnce(&Store) -> Result<R>) -> Result<Plan> {
        let core = self.core.id();
        PLANS.with(|plans| {
            plans.borrow_mut().push(Planning {
                core,
                writes: 0,
                rows: Vec::new(),
            });
        });
        let guard = PlanGuard { core };
        let outcome = op(self);
        let changes = collapse(guard.take_rows());
        drop(guard);
        match outcome {
            Ok(_) => Ok(Plan {
                changes,
                refused: None,
            }),
            Err(error) if is_refusal(&error) => Ok(Plan {
                changes,
                refused: Some(error),
            }),
            Err(error) => Err(error),
        }
    }
}
