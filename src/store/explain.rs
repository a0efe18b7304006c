//! Where a setting's effective value comes from: `Store::explain`.

use serde_json::Value;

use crate::db::history::HistoryEntry;
use crate::error::Result;
use crate::key::validate_key;
use crate::layers::Layer;
use crate::store::Store;

/// What each layer holds for one key, and which one wins.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Explanation {
    /// The key explained.
    pub key: String,
    /// The effective value readers see (`None`: absent).
    pub value: Option<Value>,
    /// The layer the effective value comes from.
    pub layer: Option<Layer>,
    /// The environment override: the variable and its value.
    pub env: Option<(String, Value)>,
    /// What the database holds (as this store serves it: a value a
    /// validator refuses shows its served value; see `rejected()`).
    pub database: Option<Value>,
    /// The newest change-log row of the key: its seq, time and origin.
    pub last_change: Option<HistoryEntry>,
    /// The registered default.
    pub default: Option<Value>,
    /// Whether a write to the key in the database is hidden from readers
    /// by an environment override (of the key, or of a key above or below).
    pub shadowed: bool,
}

impl Store {
    /// Explains where the effective value of `key` comes from: environment
    /// override, database (with the seq, time and origin of its last
    /// change), or registered default, and what every layer holds.
    ///
    /// # Errors
    /// [`Error::InvalidKey`](crate::Error::InvalidKey), or an error reading
    /// the change log.
    ///
    /// ```
    /// use livesettings::{Layer, Options};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Options::new()
    ///     .with_defaults(serde_json::json!({"server": {"port": 80}}))
    ///     .open(dir.path().join("s.db"))?;
    /// assert_eq!(store.explain("server.port")?.layer, Some(Layer::Default));
    /// store.set("server.port", &8080)?;
    /// let explained = store.explain("server.port")?;
    /// assert_eq!(explained.layer, Some(Layer::Database));
    /// assert_eq!(explained.default, Some(serde_json::json!(80)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn explain(&self, key: &str) -> Result<Explanation> {
        validate_key(key)?;
        let core = &self.core;
        let db = core.snapshot.load_full();
        let layers = &core.layers;
        let resolved = layers.resolve(&db, key);
        let env = layers
            .env
            .get(key)
            .map(|over| (over.variable.clone(), over.value.as_ref().clone()));
        let shadowed = env.is_some() || layers.hides(key);
        Ok(Explanation {
            key: key.to_owned(),
            value: resolved.as_ref().map(|(value, _)| value.as_ref().clone()),
            layer: resolved.map(|(_, layer)| layer),
            env,
            database: db.get_json(key).cloned(),
            last_change: self.history(key, 1)?.pop(),
            default: layers.defaults.get(key).map(|value| value.as_ref().clone()),
            shadowed,
        })
    }
}

impl Store {
    /// Every effective key at or below `prefix`, with its value and the
    /// layer it comes from, in key order (what `export --layers` prints).
    pub fn provenance(&self, prefix: &str) -> Result<Vec<(String, Value, Layer)>> {
        crate::key::validate_prefix(prefix)?;
        let core = &self.core;
        let db = core.snapshot.load_full();
        let view = core.view().load_full();
        Ok(view
            .entries(prefix)
            .map(|(key, value)| {
                let layer = core
                    .layers
                    .resolve(&db, key)
                    .map_or(Layer::Database, |(_, layer)| layer);
                (key.to_owned(), value.clone(), layer)
            })
            .collect())
    }
}
