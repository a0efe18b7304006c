//! The bearer token of `livesettings serve`: a file of its own (mode 0600),
//! created with a fresh random token when missing, used as it is when
//! present.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Random bytes in a fresh token (printed as 64 hexadecimal digits).
const TOKEN_BYTES: usize = 32;

/// The default token file of a database: `DB.token` beside it (e.g.
/// `data/settings.db.token`).
///
/// ```
/// use std::path::Path;
/// let file = livesettings::serve::token::default_file(Path::new("data/settings.db"));
/// assert_eq!(file, Path::new("data/settings.db.token"));
/// ```
pub fn default_file(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".token");
    name.into()
}

/// The token in `file`: its first line, without surrounding whitespace.
/// When the file is missing, it is created (mode 0600, never overwriting a
/// file that appeared meanwhile) holding a fresh random token.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read or created, or the system's
/// random source fails; [`Error::InvalidOption`] when the file holds no
/// token (empty, or not UTF-8).
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let file = dir.path().join("settings.db.token");
/// let token = livesettings::serve::token::load_or_create(&file)?;
/// assert_eq!(token.len(), 64);
/// assert_eq!(livesettings::serve::token::load_or_create(&file)?, token);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_or_create(file: &Path) -> Result<String> {
    match std::fs::read(file) {
        Ok(bytes) => parse(file, &bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => create(file),
        Err(source) => Err(Error::Io {
            context: format!("cannot read the token file {}", file.display()),
            source,
        }),
    }
}

fn parse(file: &Path, bytes: &[u8]) -> Result<String> {
    let token = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.lines().next())
        .map(str::trim)
        .unwrap_or_default();
    if token.is_empty() {
        return Err(Error::InvalidOption {
            option: "token-file",
            reason: format!(
                "{} holds no token (write one on its first line, or delete the file to get a fresh one)",
                file.display()
            ),
        });
    }
    Ok(token.to_owned())
}

fn create(file: &Path) -> Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|error| Error::Io {
        context: "cannot draw a random token".to_owned(),
        source: std::io::Error::other(error.to_string()),
    })?;
    let token: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    if let Some(folder) = file
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
    {
        std::fs::create_dir_all(folder).map_err(|source| Error::Io {
            context: format!("cannot create the folder of {}", file.display()),
            source,
        })?;
    }
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file);
    let mut handle = match opened {
        Ok(handle) => handle,
        // Another process created it first: use its token.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            return load_or_create(file);
        }
        Err(source) => {
            return Err(Error::Io {
                context: format!("cannot create the token file {}", file.display()),
                source,
            });
        }
    };
    handle
        .write_all(format!("{token}\n").as_bytes())
        .and_then(|()| handle.sync_all())
        .map_err(|source| Error::Io {
            context: format!("cannot write the token file {}", file.display()),
            source,
        })?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_missing_token_file_is_created_private_with_a_fresh_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub").join("t");
        let first = load_or_create(&file).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        let other = load_or_create(&dir.path().join("u")).unwrap();
        assert_ne!(first, other);
    }

    #[test]
    fn an_existing_token_file_is_used_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t");
        std::fs::write(&file, "  my-own-token \nignored\n").unwrap();
        assert_eq!(load_or_create(&file).unwrap(), "my-own-token");
        std::fs::write(&file, "\n").unwrap();
        assert!(load_or_create(&file).is_err());
    }
}
