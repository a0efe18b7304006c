//! The file formats of `import` and `export`: JSON, TOML and YAML.
//!
//! Every format is read into the JSON tree that a JSON file would give, so
//! its values go through the same checks on import, and every format is
//! printed from the tree that `export` prints as JSON. A tree that a format
//! cannot hold (a `null` in TOML) is refused naming the key, never
//! dropped; each rendered document is read back and compared before it is
//! printed, so what `export` prints, `import` reads back unchanged.

use std::fmt;
use std::path::Path;

use livesettings::Error;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};
use serde_saphyr::MessageFormatter;

/// A file format of `import` and `export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Toml,
    Yaml,
}

impl Format {
    /// `--format` when given, else the file's extension (`.json`, `.toml`,
    /// `.yaml`, `.yml`), else JSON.
    pub fn choose(explicit: Option<Format>, file: Option<&Path>) -> Format {
        explicit
            .or_else(|| file.and_then(Format::of_extension))
            .unwrap_or(Format::Json)
    }

    fn of_extension(file: &Path) -> Option<Format> {
        let extension = file.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "json" => Some(Format::Json),
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::Toml => "TOML",
            Format::Yaml => "YAML",
        }
    }

    /// Parses the document `text` read from `name` (for messages), which
    /// will be written at or below `base` (for the keys named in errors).
    ///
    /// A malformed TOML or YAML document is an [`Error::Io`] of kind
    /// `InvalidData` reading `cannot read NAME: line L, column C: what`.
    pub fn parse(self, name: &str, base: &str, text: &str) -> Result<Value, Error> {
        match self {
            Format::Json => {
                // Integers that JSON numbers would round are refused, not rounded.
                livesettings::parse_json_value(base, text).map_err(|error| match error {
                    Error::Json { source, .. } => Error::Json {
                        context: format!("{name} is not valid JSON"),
                        source,
                    },
                    other => other,
                })
            }
            Format::Toml => {
                let table: toml::Table = toml::from_str(text).map_err(|error| {
                    let at = error.span().map(|span| line_column(text, span.start));
                    let message = error.message().to_owned();
                    malformed(name, at, message, Some(Box::new(error)))
                })?;
                from_toml(base, false, toml::Value::Table(table))
            }
            Format::Yaml => {
                let value: Value = serde_saphyr::from_str_with_options(text, yaml_options())
                    .map_err(|error| yaml_error(name, error))?;
                check_yaml_integers(name, base, text, &value)?;
                Ok(value)
            }
        }
    }

    /// Prints `tree`, the settings at or below `prefix` (`""` for all of
    /// them), with no trailing newline.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] naming the key when the format cannot hold
    /// the tree (TOML: a value at the top, `null`, an integer above
    /// `i64::MAX`), or when the printed document would not read back equal.
    pub fn render(self, prefix: &str, tree: &Value) -> Result<String, Error> {
        let text = match self {
            Format::Json => {
                return Ok(serde_json::to_string_pretty(tree).unwrap_or_else(|_| tree.to_string()));
            }
            Format::Toml => {
                if !tree.is_object() {
                    return Err(Error::InvalidValue {
                        key: prefix.to_owned(),
                        reason: "it holds a value, not a section, and a TOML document is a table: \
                                 export it with --format json or yaml, or export the section above it"
                            .to_owned(),
                    });
                }
                check_toml(prefix, false, tree)?;
                toml::to_string(tree).map_err(|error| cannot_print(self, prefix, &error))?
            }
            Format::Yaml => {
                serde_saphyr::to_string(tree).map_err(|error| cannot_print(self, prefix, &error))?
            }
        };
        // What is printed is what `import` reads back: check it.
        let back = self.parse(self.name(), prefix, &text)?;
        if let Some(key) = first_difference(prefix, tree, &back) {
            return Err(Error::InvalidValue {
                key,
                reason: format!(
                    "the {} printed for it would not read back the same; export with --format json",
                    self.name()
                ),
            });
        }
        Ok(text.trim_end_matches('\n').to_owned())
    }
}

/// A malformed document: where, and what the parser said.
#[derive(Debug)]
struct Malformed {
    at: Option<(usize, usize)>,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((line, column)) => write!(f, "line {line}, column {column}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Malformed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|source| source as _)
    }
}

fn malformed(
    name: &str,
    at: Option<(usize, usize)>,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    // One line: the parsers' own messages may span several.
    let message = message.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    Error::Io {
        context: format!("cannot read {name}"),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            Malformed {
                at,
                message,
                source,
            },
        ),
    }
}

/// The 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |newline| newline + 1);
    (line, before[start..].chars().count() + 1)
}

fn cannot_print(format: Format, prefix: &str, error: &dyn fmt::Display) -> Error {
    Error::InvalidValue {
        key: prefix.to_owned(),
        reason: format!("cannot be printed as {}: {error}", format.name()),
    }
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_owned()
    } else {
        format!("{base}.{name}")
    }
}

// ---------------------------------------------------------------------------
// TOML

/// Converts a parsed TOML value into JSON. `key` is the setting it belongs
/// to; below an array, members are parts of that one value.
fn from_toml(key: &str, in_array: bool, value: toml::Value) -> Result<Value, Error> {
    Ok(match value {
        toml::Value::String(text) => Value::String(text),
        toml::Value::Integer(integer) => Value::from(integer),
        toml::Value::Float(float) => {
            Value::Number(Number::from_f64(float).ok_or_else(|| Error::InvalidValue {
                key: key.to_owned(),
                reason: format!("{float} is not a number JSON can hold (no NaN or infinity)"),
            })?)
        }
        toml::Value::Boolean(boolean) => Value::Bool(boolean),
        // Settings have no date type: a date is kept as its TOML text.
        toml::Value::Datetime(datetime) => Value::String(datetime.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| from_toml(key, true, item))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(table) => Value::Object(
            table
                .into_iter()
                .map(|(name, member)| {
                    let member_key = if in_array {
                        key.to_owned()
                    } else {
                        join(key, &name)
                    };
                    Ok((name, from_toml(&member_key, in_array, member)?))
                })
                .collect::<Result<_, Error>>()?,
        ),
    })
}

/// Refuses what TOML cannot hold, naming the setting: `null` (TOML has no
/// null) and integers above `i64::MAX` (TOML integers are 64-bit signed).
fn check_toml(key: &str, in_array: bool, value: &Value) -> Result<(), Error> {
    match value {
        Value::Null => Err(Error::InvalidValue {
            key: key.to_owned(),
            reason: "TOML has no null: export with --format json or yaml, or unset the key"
                .to_owned(),
        }),
        Value::Number(number) if number.is_u64() && number.as_i64().is_none() => {
            Err(Error::InvalidValue {
                key: key.to_owned(),
                reason: format!(
                    "{number} is above the largest TOML integer ({}): export with --format json or yaml",
                    i64::MAX
                ),
            })
        }
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| check_toml(key, true, item)),
        Value::Object(map) => map.iter().try_for_each(|(name, member)| {
            if in_array {
                check_toml(key, true, member)
            } else {
                check_toml(&join(key, name), false, member)
            }
        }),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// YAML

/// YAML is read by the YAML 1.2 core schema, so that a scalar means what it
/// means to current YAML tools and to the JSON it becomes: `yes`, `on`,
/// `NO` are strings, not booleans (YAML 1.1's "Norway problem"); `0123`
/// and `1_000` are strings, not numbers; a key `null` is the key "null".
/// Duplicate keys, NaN and infinities, and tags other than YAML's own are
/// refused (by the crate's defaults and `reject_unsupported_tags`).
/// `export` quotes every string a YAML 1.1 reader would take for something
/// else, so its files read the same everywhere.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
        null_as_string: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        reject_unsupported_tags: true,
    }
}

fn yaml_error(name: &str, error: serde_saphyr::Error) -> Error {
    let plain = error.without_snippet();
    let message = serde_saphyr::UserMessageFormatter
        .format_message(plain)
        .into_owned();
    let at = error.location().map(|location| {
        let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        (to_usize(location.line()), to_usize(location.column()))
    });
    let source = std::io::Error::other(error.without_snippet().to_string());
    malformed(name, at, message, Some(Box::new(source)))
}

/// Refuses an integer literal beyond 64 bits, which the YAML parser reads
/// as the nearest float (as `livesettings::parse_json_value` does for
/// JSON). Such a float is integral and at least 2^63 in magnitude; only
/// when one is there is the text read again, guided by the tree, to see
/// how the number was written.
fn check_yaml_integers(name: &str, base: &str, text: &str, value: &Value) -> Result<(), Error> {
    if !has_large_integral_float(value) {
        return Ok(());
    }
    let found = serde_saphyr::with_deserializer_from_str_with_options(text, yaml_options(), |de| {
        Guided {
            value,
            key: base.to_owned(),
            in_array: false,
        }
        .deserialize(de)
    })
    .map_err(|error| yaml_error(name, error))?;
    let Some((key, literal)) = found else {
        return Ok(());
    };
    let rounded = literal
        .parse::<f64>()
        .map(|number| format!(" and would be stored rounded as {number:e}"))
        .unwrap_or_default();
    Err(Error::InvalidValue {
        key,
        reason: format!(
            "the integer {literal} does not fit a 64-bit integer (i64 or u64){rounded}; \
             write it as a string (\"{literal}\") or as a float (with a '.' or an exponent) \
             to store it on purpose"
        ),
    })
}

/// A float that an integer literal beyond 64 bits may have become: every
/// such literal is at least 2^63 in magnitude, and so is its nearest f64.
fn is_large_integral(number: &Number) -> bool {
    const TWO_TO_63: f64 = 9_223_372_036_854_775_808.0;
    number
        .as_f64()
        .is_some_and(|float| number.is_f64() && float.fract() == 0.0 && float.abs() >= TWO_TO_63)
}

fn has_large_integral_float(value: &Value) -> bool {
    let mut stack = vec![value];
    while let Some(node) = stack.pop() {
        match node {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.values()),
            Value::Number(number) if is_large_integral(number) => return true,
            _ => {}
        }
    }
    false
}

/// Whether a YAML scalar's text is a decimal integer literal.
fn is_integer_literal(text: &str) -> bool {
    let digits = text.trim().strip_prefix(['-', '+']).unwrap_or(text.trim());
    !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit())
}

/// One node of the document, read again knowing from the first reading
/// what it is: maps and sequences are walked, a large integral float is
/// read as its text, everything else skipped. Finds the first integer
/// literal too large for 64 bits, with its setting's key.
struct Guided<'v> {
    value: &'v Value,
    key: String,
    in_array: bool,
}

type Found = Option<(String, String)>;

impl<'de> DeserializeSeed<'de> for Guided<'_> {
    type Value = Found;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Found, D::Error> {
        match self.value {
            Value::Object(_) => de.deserialize_map(self),
            Value::Array(_) => de.deserialize_seq(self),
            Value::Number(number) if is_large_integral(number) => {
                let text = <String as serde::Deserialize>::deserialize(de)?;
                Ok(is_integer_literal(&text).then_some((self.key, text)))
            }
            _ => <IgnoredAny as serde::Deserialize>::deserialize(de).map(|_| None),
        }
    }
}

impl<'de> Visitor<'de> for Guided<'_> {
    type Value = Found;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the node the first reading found")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found, A::Error> {
        let mut found = None;
        while let Some(name) = map.next_key::<String>()? {
            let member = self.value.get(&name);
            let result = match member {
                Some(member) if found.is_none() => map.next_value_seed(Guided {
                    value: member,
                    key: if self.in_array {
                        self.key.clone()
                    } else {
                        join(&self.key, &name)
                    },
                    in_array: self.in_array,
                })?,
                _ => map.next_value::<IgnoredAny>().map(|_| None)?,
            };
            found = found.or(result);
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Found, A::Error> {
        let items = self.value.as_array().map_or(&[][..], Vec::as_slice);
        let mut found = None;
        let mut index = 0;
        loop {
            let result = match items.get(index) {
                Some(item) if found.is_none() => seq.next_element_seed(Guided {
                    value: item,
                    key: self.key.clone(),
                    in_array: true,
                })?,
                _ => seq.next_element::<IgnoredAny>()?.map(|_| None),
            };
            let Some(result) = result else {
                return Ok(found);
            };
            found = found.or(result);
            index += 1;
        }
    }
}

/// The key of the first leaf where `a` and `b` differ, if any.
fn first_difference(key: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(left), Value::Object(right)) => {
            if left.len() != right.len() || left.keys().ne(right.keys()) {
                return Some(key.to_owned());
            }
            left.iter()
                .find_map(|(name, member)| first_difference(&join(key, name), member, &right[name]))
        }
        _ => (a != b).then(|| key.to_owned()),
    }
}
