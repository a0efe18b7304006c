//! How settings map onto a NATS KV bucket.
//!
//! Keys: a livesettings key (segments of `[A-Za-z0-9_-]` joined by single
//! dots, see [`validate_key`](crate::validate_key)) is already a valid KV
//! key (`[-/_=.a-zA-Z0-9]`, no leading or trailing dot), and its dots are
//! the subject's token separators, so a key is its own KV key: the mapping
//! is the identity, checked both ways. A bucket entry whose key is not a
//! livesettings key (written by another tool) is refused on the way in.
//!
//! Values: the stored JSON text, as UTF-8 bytes. A delete is a KV delete
//! marker (`KV-Operation: DEL`, empty payload); a purge is applied as a
//! delete.
//!
//! Commits: every message of one pushed commit carries
//! `Livesettings-Batch: <id> <index>/<count>`, so the inbound side can apply
//! the entries of one commit in one transaction.

use async_nats::HeaderMap;

use crate::key::validate_key;

/// The header naming the pushed commit an entry belongs to.
pub(crate) const BATCH_HEADER: &str = "Livesettings-Batch";
/// The KV operation header (as the KV API writes it).
pub(crate) const KV_OPERATION: &str = "KV-Operation";

/// The subject of `key` in `bucket`.
pub(crate) fn subject(bucket: &str, key: &str) -> String {
    format!("$KV.{bucket}.{key}")
}

/// The filter subject of every key of `bucket`.
pub(crate) fn all_keys(bucket: &str) -> String {
    format!("$KV.{bucket}.>")
}

/// The livesettings key of a bucket subject, `None` for a subject of
/// another bucket or a KV key that is not a livesettings key.
pub(crate) fn key_of(bucket: &str, subject: &str) -> Option<String> {
    let key = subject.strip_prefix("$KV.")?.strip_prefix(bucket)?;
    let key = key.strip_prefix('.')?;
    validate_key(key).ok().map(|()| key.to_owned())
}

/// What a bucket entry does to its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Sets the key to this JSON text.
    Put(String),
    /// Removes the key (a delete or purge marker).
    Delete,
}

/// The operation of a stored message, from its headers and payload.
/// `Err` names why a payload cannot be a livesettings value.
pub(crate) fn op_of(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<Op, String> {
    let marker = headers.and_then(|headers| {
        headers
            .get(KV_OPERATION)
            .map(|value| value.as_str().to_owned())
            .or_else(|| {
                headers
                    .get(async_nats::header::NATS_MARKER_REASON)
                    .map(|_| "PURGE".to_owned())
            })
    });
    match marker.as_deref() {
        Some("DEL") | Some("PURGE") => return Ok(Op::Delete),
        Some("PUT") | None => {}
        Some(other) => return Err(format!("unknown KV operation {other:?}")),
    }
    let text = std::str::from_utf8(payload).map_err(|_| "the value is not UTF-8".to_owned())?;
    crate::value::parse_json_value("", text)
        .map_err(|error| format!("the value is not a livesettings value: {error}"))?;
    Ok(Op::Put(text.to_owned()))
}

/// The commit an entry belongs to: `(id, index, count)` with `index` in
/// `1..=count`.
pub(crate) fn batch_of(headers: Option<&HeaderMap>) -> Option<(String, usize, usize)> {
    let value = headers?.get(BATCH_HEADER)?.as_str().to_owned();
    let (id, position) = value.split_once(' ')?;
    let (index, count) = position.split_once('/')?;
    let (index, count) = (index.parse().ok()?, count.parse().ok()?);
    (1..=count)
        .contains(&index)
        .then(|| (id.to_owned(), index, count))
}

/// The header value for message `index` of `count` in commit `id`.
pub(crate) fn batch_header(id: &str, index: usize, count: usize) -> String {
    format!("{id} {index}/{count}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_subjects_and_foreign_keys_are_refused() {
        let key = "visualisation.graphs.logseq-2.physics_x.damping";
        assert_eq!(
            key_of("fleet", &subject("fleet", key)).as_deref(),
            Some(key)
        );
        assert_eq!(
            key_of("fleet", "$KV.fleet.a/b"),
            None,
            "'/' is not a key character"
        );
        assert_eq!(key_of("fleet", "$KV.fleet.a=b"), None);
        assert_eq!(key_of("fleet", "$KV.other.a"), None);
        assert_eq!(key_of("fleet", "$KV.fleetx.a"), None);
    }

    #[test]
    fn operations_and_batches_are_read_from_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(KV_OPERATION, "DEL");
        assert_eq!(op_of(Some(&headers), b""), Ok(Op::Delete));
        assert_eq!(op_of(None, b"0.5"), Ok(Op::Put("0.5".to_owned())));
        assert!(op_of(None, b"not json").is_err());
        let mut headers = HeaderMap::new();
        headers.insert(BATCH_HEADER, batch_header("abc", 2, 3).as_str());
        assert_eq!(batch_of(Some(&headers)), Some(("abc".to_owned(), 2, 3)));
        let mut headers = HeaderMap::new();
        headers.insert(BATCH_HEADER, "abc 4/3");
        assert_eq!(batch_of(Some(&headers)), None);
    }
}
