//! Deciding how a store opens the file at its path: read-write (creating
//! it when missing), or read-only — asked for, or because this process
//! cannot write the file or its folder — in which case nothing is created.

use std::path::Path;

use crate::db::diagnose;
use crate::db::file_id::create_private;
use crate::db::identify::EMPTY_FILE;
use crate::error::{Error, Result};
use crate::options::Options;

/// Settles the options for opening `path`: switches to read-only when the
/// existing file or its folder cannot be written (returning why), creates
/// the file for a store that writes, and checks that a read-only store has
/// a non-empty file to read.
pub(crate) fn prepare(path: &Path, options: Options) -> Result<(Options, Option<String>)> {
    let exists = std::fs::symlink_metadata(path).is_ok();
    let cause = if !options.is_read_only() && exists {
        diagnose::write_blocker(path)
    } else {
        None
    };
    let options = match &cause {
        Some(cause) => {
            log::info!("{}: opening read-only: {cause}", path.display());
            options.read_only()
        }
        None => options,
    };
    if !options.is_read_only() {
        create_private(path, options.file_mode())
            .map_err(|error| diagnose::explain(error, path))?;
        return Ok((options, cause));
    }
    let meta = std::fs::metadata(path).map_err(|source| Error::Io {
        context: format!(
            "no database at {} (a read-only store creates nothing)",
            path.display()
        ),
        source,
    })?;
    if meta.len() == 0 {
        return Err(Error::NotLivesettings {
            path: path.to_owned(),
            reason: EMPTY_FILE.to_owned(),
        });
    }
    Ok((options, cause))
}

/// Names the cause of a failed open of a store that writes (a read-only
/// store's errors already say what they are).
pub(crate) fn explain(error: Error, path: &Path, options: &Options) -> Error {
    if options.is_read_only() {
        error
    } else {
        diagnose::explain(error, path)
    }
}

/// The error of a write on a read-only store.
pub(crate) fn refused_write(path: &Path, cause: Option<&str>) -> Error {
    match cause {
        Some(cause) => Error::CannotWrite {
            path: path.to_owned(),
            cause: format!("{cause}, so the store opened read-only"),
            source: None,
        },
        None => Error::ReadOnly {
            path: path.to_owned(),
        },
    }
}
