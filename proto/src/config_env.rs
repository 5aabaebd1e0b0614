//! Every config key from the environment, for both binaries: `<PREFIX><SECTION>__<KEY>=value`
//! (`SCO_AGENT__AGENT__INTERVAL_MS=500`, `SCO_CP__AUTH__TOKEN_TTL_SECS=600`, a top-level key as
//! `SCO_CP__HTTP_LISTEN=...`).
//!
//! The variables are applied to the parsed TOML document *before* it is deserialised into the
//! strict (`deny_unknown_fields`) config structs, so an override goes through exactly the checks
//! a value in the file does. A double underscore separates path parts; single underscores stay
//! inside a key; key names match case-insensitively. Below a map (`agent.labels`,
//! `remediate.env`) the entry name is kept as written (`SCO_AGENT__AGENT__LABELS__role=web`).
//! The value is parsed as a TOML value when it is one (`500`, `true`, `["a", "b"]`,
//! `{ role = "web" }`), else taken as a string; a key whose type is a string (names, paths,
//! addresses, secrets) always takes the value as written, so `SCO_CP__AUTH__JWT_SECRET=1234...`
//! never turns into a number. A variable with the prefix that names no key is refused, naming
//! the nearest key; a value of the wrong type is refused naming the variable and the key.
//!
//! The set of keys is not listed by hand: [`Schema::of`] walks the config type's own
//! `Deserialize` implementation (struct field names, maps, string leaves), so a key added to a
//! struct is settable from the environment at once.
//!
//! Here, in the one crate both binaries depend on, rather than in either binary: the rule is
//! the same for both and must not drift. It adds `toml`, `serde` and `serde_path_to_error` to
//! this crate, which both binaries already link.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;

use serde::de::{self, DeserializeOwned, Visitor};
use serde::Deserialize;

/// Separates the parts of a key path in a variable name.
pub const SEPARATOR: &str = "__";

/// Deepest key path followed when reading a config type's keys.
const MAX_DEPTH: usize = 8;

/// One variable that set a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub var: String,
    /// Dotted key path, e.g. `agent.labels.role`.
    pub key: String,
}

/// A deserialised config and the variables that changed it.
#[derive(Debug, Clone)]
pub struct Layered<T> {
    pub value: T,
    pub overrides: Vec<Override>,
}

impl<T> Layered<T> {
    /// Whether a variable set `key` (dotted), itself or a table holding it.
    pub fn sets(&self, key: &str) -> bool {
        sets(&self.overrides, key)
    }
}

/// Whether one of `overrides` set `key` (dotted), itself or a table holding it.
pub fn sets(overrides: &[Override], key: &str) -> bool {
    overrides.iter().any(|o| {
        key == o.key
            || key
                .strip_prefix(o.key.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// The value of a binary's specific (older) variable `name` among `vars`, unless the generic
/// variable of the same key (`specific`: pairs of specific variable and dotted key) already set
/// it: the generic variable wins, so one key is never set twice.
pub fn specific_var(
    vars: &[(OsString, OsString)],
    specific: &[(&str, &str)],
    overrides: &[Override],
    name: &str,
) -> Option<String> {
    let generic = specific
        .iter()
        .any(|(var, key)| *var == name && sets(overrides, key));
    if generic {
        return None;
    }
    vars.iter()
        .find(|(k, _)| k.to_str() == Some(name))
        .and_then(|(_, v)| v.to_str())
        .map(String::from)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvError {
    /// The variable has the prefix but its path names no key.
    UnknownKey {
        var: String,
        nearest: String,
        nearest_var: String,
    },
    /// The variable's value is not valid UTF-8.
    NotUnicode { var: String },
    /// The value does not fit the key's type.
    Value {
        var: String,
        key: String,
        value: String,
        reason: String,
    },
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKey {
                var,
                nearest,
                nearest_var,
            } => write!(
                f,
                "environment variable {var} names no config key (nearest key: `{nearest}`, \
                 variable {nearest_var})"
            ),
            Self::NotUnicode { var } => {
                write!(f, "environment variable {var} is not valid UTF-8")
            }
            Self::Value {
                var,
                key,
                value,
                reason,
            } => write!(
                f,
                "invalid value {value:?} in environment variable {var} for `{key}`: {reason}"
            ),
        }
    }
}

impl std::error::Error for EnvError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The file itself is wrong (syntax, unknown key, type); the message is TOML's, one line.
    File(String),
    /// An environment variable is wrong.
    Env(EnvError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(m) => f.write_str(m),
            Self::Env(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LoadError {}

/// What a key path holds, as far as environment values are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    /// A struct (a section): its field names.
    Struct(&'static [&'static str]),
    /// A map with free entry names; its entries are at `<path>.*`.
    Map,
    /// A string-typed value (string, path, address, ...): env values are taken as written.
    Str,
    /// Anything else (numbers, booleans, arrays, ...): env values are parsed as TOML.
    Other,
}

/// The keys of a config type, read from its `Deserialize` implementation.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Dotted path (`""` for the root) to what it holds.
    nodes: BTreeMap<String, Node>,
}

impl Schema {
    /// Walks `T`'s `Deserialize` implementation once per key path: structs tell their field
    /// names, maps and strings tell what they are, and nothing is ever built.
    pub fn of<T: DeserializeOwned>() -> Self {
        let mut nodes = BTreeMap::new();
        let mut todo: Vec<Vec<&'static str>> = vec![Vec::new()];
        while let Some(target) = todo.pop() {
            if target.len() > MAX_DEPTH {
                continue;
            }
            // The walk always ends in an error (it never has a value to give); what it
            // recorded on the way is the point.
            let _ = T::deserialize(Probe {
                path: String::new(),
                target: &target,
                nodes: &mut nodes,
            });
            if let Some(Node::Struct(fields)) = nodes.get(&target.join(".")) {
                for field in fields.iter() {
                    let mut next = target.clone();
                    next.push(*field);
                    todo.push(next);
                }
            }
        }
        Self { nodes }
    }

    /// Every key (sections and values, not map entries), dotted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.nodes
            .keys()
            .map(String::as_str)
            .filter(|k| !k.is_empty() && !k.split('.').any(|p| p == "*"))
    }

    fn node(&self, path: &[String]) -> Option<Node> {
        self.nodes.get(&path.join(".")).copied()
    }

    /// The key path `name` (the part after the prefix) names, with canonical key names.
    fn resolve(&self, name: &str) -> Option<(Vec<String>, Node)> {
        let mut path: Vec<String> = Vec::new();
        let mut node = self.node(&path)?;
        for part in name.split(SEPARATOR) {
            if part.is_empty() {
                return None;
            }
            match node {
                Node::Struct(fields) => {
                    let field = fields.iter().find(|f| f.eq_ignore_ascii_case(part))?;
                    path.push((*field).to_string());
                    node = self.node(&path)?;
                }
                Node::Map => {
                    let mut entry = path.clone();
                    entry.push("*".into());
                    node = self.node(&entry).unwrap_or(Node::Other);
                    path.push(part.to_string());
                }
                Node::Str | Node::Other => return None,
            }
        }
        (!path.is_empty()).then_some((path, node))
    }

    /// The key closest to what `name` (after the prefix) spells: one it begins (a key cut
    /// short, `rest.cors` for `rest.cors_allowed_origins`), else the fewest edits away.
    fn nearest(&self, name: &str) -> String {
        let spelt = name.to_ascii_lowercase().replace(SEPARATOR, ".");
        self.keys()
            .min_by_key(|k| (!k.starts_with(&spelt), edit_distance(&spelt, k), k.len()))
            .unwrap_or("")
            .to_string()
    }
}

/// The variable that sets `key` (dotted) under `prefix`.
pub fn var_name(prefix: &str, key: &str) -> String {
    format!(
        "{prefix}{}",
        key.split('.')
            .map(str::to_ascii_uppercase)
            .collect::<Vec<_>>()
            .join(SEPARATOR)
    )
}

/// Applies every variable of `vars` whose name starts with `prefix` to `doc`, shorter paths
/// first (a whole section as an inline table, then single keys of it), and says which.
pub fn apply<I, K, V>(
    doc: &mut toml::Table,
    schema: &Schema,
    prefix: &str,
    vars: I,
) -> Result<Vec<Override>, EnvError>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<OsString>,
    V: Into<OsString>,
{
    let mut found = Vec::new();
    for (name, value) in vars {
        let (name, value) = (name.into(), value.into());
        let name = name.to_string_lossy();
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let var = name.to_string();
        let value = value
            .into_string()
            .map_err(|_| EnvError::NotUnicode { var: var.clone() })?;
        let Some((path, node)) = schema.resolve(rest) else {
            let nearest = schema.nearest(rest);
            return Err(EnvError::UnknownKey {
                var,
                nearest_var: var_name(prefix, &nearest),
                nearest,
            });
        };
        found.push((path, node, var, value));
    }
    found.sort_by(|a, b| (a.0.len(), &a.2).cmp(&(b.0.len(), &b.2)));
    let mut applied = Vec::with_capacity(found.len());
    for (path, node, var, value) in found {
        let parsed = match node {
            Node::Str => toml::Value::String(value),
            _ => parse_value(&value).unwrap_or(toml::Value::String(value)),
        };
        set(doc, &path, parsed);
        applied.push(Override {
            var,
            key: path.join("."),
        });
    }
    Ok(applied)
}

/// `text` as one TOML value (`500`, `true`, `["a"]`, `{ a = 1 }`, `"quoted"`), if it is one.
fn parse_value(text: &str) -> Option<toml::Value> {
    let deserializer = toml::de::ValueDeserializer::parse(text).ok()?;
    toml::Value::deserialize(deserializer).ok()
}

fn set(doc: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut table = doc;
    for p in parents {
        let slot = table
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !slot.is_table() {
            // The variable wins over whatever the file had there.
            *slot = toml::Value::Table(toml::Table::new());
        }
        match slot {
            toml::Value::Table(t) => table = t,
            _ => return,
        }
    }
    table.insert(last.clone(), value);
}

/// Parses `text` (the config file, empty for none), applies the variables with `prefix` and
/// deserialises the result into `T`. Without a matching variable this is `toml::from_str`
/// exactly, so errors in the file read as they always did.
pub fn from_toml<T, I, K, V>(text: &str, prefix: &str, vars: I) -> Result<Layered<T>, LoadError>
where
    T: DeserializeOwned,
    I: IntoIterator<Item = (K, V)>,
    K: Into<OsString>,
    V: Into<OsString>,
{
    let one_line = |e: toml::de::Error| e.to_string().trim_end().replace('\n', " ");
    let mut doc: toml::Table = toml::from_str(text).map_err(|e| LoadError::File(one_line(e)))?;
    let schema = Schema::of::<T>();
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let vars = vars.into_iter().map(|(k, v)| {
        let (k, v): (OsString, OsString) = (k.into(), v.into());
        if let (Some(k), Some(v)) = (k.to_str(), v.to_str()) {
            values.insert(k.to_string(), v.to_string());
        }
        (k, v)
    });
    let overrides = apply(&mut doc, &schema, prefix, vars).map_err(LoadError::Env)?;
    if overrides.is_empty() {
        let value = toml::from_str(text).map_err(|e| LoadError::File(one_line(e)))?;
        return Ok(Layered { value, overrides });
    }
    match serde_path_to_error::deserialize::<_, T>(toml::Value::Table(doc)) {
        Ok(value) => Ok(Layered { value, overrides }),
        Err(e) => {
            let key = e
                .path()
                .iter()
                .filter_map(|s| match s {
                    serde_path_to_error::Segment::Map { key } => Some(key.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(".");
            let reason = e.inner().message().trim_end().replace('\n', " ");
            // The deepest variable at or above the failing key, else one below it (a missing
            // field of a section a variable replaced is that variable's fault too).
            let culprit = overrides
                .iter()
                .rev()
                .find(|o| key == o.key || key.starts_with(&format!("{}.", o.key)))
                .or_else(|| {
                    overrides
                        .iter()
                        .find(|o| !key.is_empty() && o.key.starts_with(&format!("{key}.")))
                });
            match culprit {
                Some(o) => Err(LoadError::Env(EnvError::Value {
                    var: o.var.clone(),
                    key,
                    value: values.get(&o.var).cloned().unwrap_or_default(),
                    reason,
                })),
                // Not a variable's doing: the file's own error, as TOML words it.
                None => Err(LoadError::File(match toml::from_str::<T>(text) {
                    Err(e) => one_line(e),
                    Ok(_) => format!("`{key}`: {reason}"),
                })),
            }
        }
    }
}

/// Levenshtein distance over bytes (key names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Ends every walk of [`Probe`]: it never has a value to give.
#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("schema probe")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

/// A deserializer that records what a type asks for at `path`, descending into the struct
/// fields named by `target` (one field per walk, so a required field elsewhere never stops it).
struct Probe<'a> {
    path: String,
    target: &'a [&'static str],
    nodes: &'a mut BTreeMap<String, Node>,
}

impl Probe<'_> {
    fn record(self, node: Node) -> Stop {
        if self.target.is_empty() {
            self.nodes.insert(self.path, node);
        }
        Stop
    }

    fn child(path: &str, name: &str) -> String {
        if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    }
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(self.record(Node::Other))
    }

    fn deserialize_str<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(self.record(Node::Str))
    }

    fn deserialize_string<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(self.record(Node::Str))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        if !self.target.is_empty() {
            return Err(Stop);
        }
        let entry = Self::child(&self.path, "*");
        self.nodes.insert(self.path, Node::Map);
        visitor.visit_map(Entries {
            next: Some(("*", entry, &[])),
            nodes: self.nodes,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        match self.target.split_first() {
            None => {
                self.nodes.insert(self.path, Node::Struct(fields));
                visitor.visit_map(Entries {
                    next: None,
                    nodes: self.nodes,
                })
            }
            Some((field, rest)) if fields.contains(field) => visitor.visit_map(Entries {
                next: Some((*field, Self::child(&self.path, field), rest)),
                nodes: self.nodes,
            }),
            Some(_) => Err(Stop),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit
        unit_struct seq tuple tuple_struct enum identifier ignored_any
    }
}

/// At most one entry: the field (or map entry) the walk descends into.
struct Entries<'a> {
    next: Option<(&'static str, String, &'a [&'static str])>,
    nodes: &'a mut BTreeMap<String, Node>,
}

impl<'de> de::MapAccess<'de> for Entries<'_> {
    type Error = Stop;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        match &self.next {
            Some((name, _, _)) => seed
                .deserialize(de::value::StrDeserializer::<Stop>::new(name))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<S: de::DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Stop> {
        let (_, path, target) = self.next.take().ok_or(Stop)?;
        seed.deserialize(Probe {
            path,
            target,
            nodes: &mut *self.nodes,
        })
    }
}

/// Why a binary's configuration could not be loaded (the agent's and the control plane's alike).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("invalid value {value:?} in environment variable {var}: {reason}")]
    Env {
        var: &'static str,
        value: String,
        reason: String,
    },
    /// A `SCO_AGENT__...` or `SCO_CP__...` variable names no key or holds a value of the wrong type.
    #[error("{0}")]
    EnvKey(EnvError),
    #[error("invalid value for `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::path::PathBuf;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[serde(default = "listen")]
        http_listen: SocketAddr,
        #[serde(default)]
        agent: Agent,
        server: Server,
    }

    fn listen() -> SocketAddr {
        ([127, 0, 0, 1], 8080).into()
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Agent {
        interval_ms: u64,
        sensitivity: f64,
        enabled: bool,
        labels: BTreeMap<String, String>,
        proc_root: PathBuf,
        ignore: Vec<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Server {
        endpoints: Vec<String>,
        server_name: Option<String>,
        #[serde(default)]
        nested: Nested,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Nested {
        deep_key: u32,
    }

    const FILE: &str = r#"
[agent]
interval_ms = 1000
labels = { role = "web" }

[server]
endpoints = ["cp:7443"]
"#;

    fn load(vars: &[(&str, &str)]) -> Result<Layered<Config>, LoadError> {
        from_toml(FILE, "SCO_T__", vars.iter().map(|(k, v)| (*k, *v)))
    }

    #[test]
    fn schema_lists_every_key_with_its_kind() {
        let s = Schema::of::<Config>();
        let keys: Vec<&str> = s.keys().collect();
        assert_eq!(
            keys,
            [
                "agent",
                "agent.enabled",
                "agent.ignore",
                "agent.interval_ms",
                "agent.labels",
                "agent.proc_root",
                "agent.sensitivity",
                "http_listen",
                "server",
                "server.endpoints",
                "server.nested",
                "server.nested.deep_key",
                "server.server_name",
            ]
        );
        let kind = |k: &str| s.nodes.get(k).copied();
        assert_eq!(kind("http_listen"), Some(Node::Str));
        assert_eq!(kind("server.server_name"), Some(Node::Str));
        assert_eq!(kind("agent.proc_root"), Some(Node::Str));
        assert_eq!(kind("agent.labels"), Some(Node::Map));
        assert_eq!(kind("agent.labels.*"), Some(Node::Str));
        assert_eq!(kind("agent.interval_ms"), Some(Node::Other));
        assert_eq!(kind("agent.ignore"), Some(Node::Other));
    }

    #[test]
    fn no_variable_is_the_file_as_is() {
        let l = load(&[("OTHER", "1"), ("SCO_T_SINGLE", "x")]).expect("loads");
        assert!(l.overrides.is_empty());
        assert_eq!(l.value.agent.interval_ms, 1000);
        assert_eq!(l.value.server.endpoints, ["cp:7443"]);
    }

    #[test]
    fn nested_keys_arrays_and_typed_values() {
        let l = load(&[
            ("SCO_T__AGENT__INTERVAL_MS", "250"),
            ("SCO_T__AGENT__SENSITIVITY", "1.5"),
            ("SCO_T__agent__enabled", "true"),
            ("SCO_T__AGENT__PROC_ROOT", "/host/proc"),
            (
                "SCO_T__AGENT__IGNORE",
                r#"["disk.used_bytes:/", "net.rx_drops_per_s:eth0"]"#,
            ),
            ("SCO_T__SERVER__ENDPOINTS", r#"["a:1","b:2"]"#),
            ("SCO_T__SERVER__SERVER_NAME", "true"),
            ("SCO_T__SERVER__NESTED__DEEP_KEY", "7"),
            ("SCO_T__HTTP_LISTEN", "0.0.0.0:9090"),
        ])
        .expect("loads");
        let c = &l.value;
        assert_eq!(c.agent.interval_ms, 250);
        assert_eq!(c.agent.sensitivity, 1.5);
        assert!(c.agent.enabled);
        assert_eq!(c.agent.proc_root, PathBuf::from("/host/proc"));
        assert_eq!(
            c.agent.ignore,
            ["disk.used_bytes:/", "net.rx_drops_per_s:eth0"]
        );
        assert_eq!(c.server.endpoints, ["a:1", "b:2"]);
        // A string key takes the value as written, even one TOML would read as a bool.
        assert_eq!(c.server.server_name.as_deref(), Some("true"));
        assert_eq!(c.server.nested.deep_key, 7);
        assert_eq!(c.http_listen, "0.0.0.0:9090".parse().expect("addr"));
        // The file's other values stay.
        assert_eq!(c.agent.labels["role"], "web");
        assert!(l.sets("agent.interval_ms") && l.sets("server.nested.deep_key"));
        assert!(!l.sets("agent.labels") && !l.sets("agent"));
        let o = l
            .overrides
            .iter()
            .find(|o| o.key == "agent.enabled")
            .expect("recorded");
        assert_eq!(o.var, "SCO_T__agent__enabled");
    }

    #[test]
    fn labels_as_a_table_or_one_entry() {
        let l =
            load(&[("SCO_T__AGENT__LABELS", r#"{ zone = "eu-1", tier = "db" }"#)]).expect("loads");
        let want: BTreeMap<String, String> = [("tier", "db"), ("zone", "eu-1")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        assert_eq!(
            l.value.agent.labels, want,
            "a table replaces the file's labels"
        );
        assert!(l.sets("agent.labels.zone"));

        // One entry: merged into the file's; its name kept as written.
        let l = load(&[("SCO_T__AGENT__LABELS__Zone", "eu-1")]).expect("loads");
        let want: BTreeMap<String, String> = [("Zone", "eu-1"), ("role", "web")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        assert_eq!(l.value.agent.labels, want);

        // Both: the table first, then the entry.
        let l = load(&[
            ("SCO_T__AGENT__LABELS__role", "db"),
            ("SCO_T__AGENT__LABELS", r#"{ role = "web", zone = "eu-1" }"#),
        ])
        .expect("loads");
        assert_eq!(l.value.agent.labels["role"], "db");
        assert_eq!(l.value.agent.labels["zone"], "eu-1");

        // A whole section as an inline table.
        let l = load(&[(
            "SCO_T__SERVER",
            r#"{ endpoints = ["x:1"], server_name = "cp" }"#,
        )])
        .expect("loads");
        assert_eq!(l.value.server.endpoints, ["x:1"]);
        assert!(l.sets("server.endpoints"));
    }

    #[test]
    fn a_bad_type_names_the_variable_and_the_key() {
        let cases = [
            ("SCO_T__AGENT__INTERVAL_MS", "ten", "agent.interval_ms"),
            ("SCO_T__AGENT__INTERVAL_MS", "-5", "agent.interval_ms"),
            ("SCO_T__AGENT__ENABLED", "yes", "agent.enabled"),
            ("SCO_T__SERVER__ENDPOINTS", "a:1", "server.endpoints"),
            ("SCO_T__SERVER__ENDPOINTS", "[1, 2]", "server.endpoints"),
            ("SCO_T__HTTP_LISTEN", "nowhere", "http_listen"),
            ("SCO_T__AGENT__LABELS", "[1]", "agent.labels"),
            ("SCO_T__SERVER", "{ server_name = \"x\" }", "server"),
            ("SCO_T__AGENT", "{ bogus = 1 }", "agent"),
        ];
        for (var, value, key) in cases {
            let err = load(&[(var, value)]).expect_err(var);
            let LoadError::Env(EnvError::Value { var: v, key: k, .. }) = &err else {
                panic!("{var}={value}: {err:?}");
            };
            assert_eq!(v, var, "{err}");
            // The key, or (for an unknown field in a table a variable gave) a key below it.
            assert!(k == key || k.starts_with(&format!("{key}.")), "{err}");
            let text = err.to_string();
            assert!(text.contains(var) && text.contains(key), "{text}");
        }
    }

    #[test]
    fn an_unknown_variable_names_the_nearest_key() {
        let cases = [
            ("SCO_T__AGENT__INTERVALMS", "agent.interval_ms"),
            ("SCO_T__AGNET__INTERVAL_MS", "agent.interval_ms"),
            ("SCO_T__SERVER__SERVERNAME", "server.server_name"),
            ("SCO_T__AGENT__INTERVAL_MS__X", "agent.interval_ms"),
            ("SCO_T__HTTP_LISTEN_", "http_listen"),
            ("SCO_T__SERVER____ENDPOINTS", "server.endpoints"),
            ("SCO_T__SERVER__END", "server.endpoints"),
        ];
        for (var, nearest) in cases {
            let err = load(&[(var, "1")]).expect_err(var);
            let LoadError::Env(EnvError::UnknownKey {
                var: v,
                nearest: n,
                nearest_var,
            }) = &err
            else {
                panic!("{var}: {err:?}");
            };
            assert_eq!((v.as_str(), n.as_str()), (var, nearest), "{err}");
            assert_eq!(nearest_var, &var_name("SCO_T__", nearest));
            assert!(err.to_string().contains(var), "{err}");
        }
        let err = load(&[("SCO_T__", "1")]).expect_err("empty path");
        assert!(matches!(err, LoadError::Env(EnvError::UnknownKey { .. })));
    }

    #[test]
    fn not_unicode_is_refused_by_name() {
        use std::os::unix::ffi::OsStringExt;
        let vars = [(
            OsString::from("SCO_T__AGENT__PROC_ROOT"),
            OsString::from_vec(vec![0xff, 0xfe]),
        )];
        let err = from_toml::<Config, _, _, _>(FILE, "SCO_T__", vars).expect_err("bytes");
        assert_eq!(
            err,
            LoadError::Env(EnvError::NotUnicode {
                var: "SCO_T__AGENT__PROC_ROOT".into()
            })
        );
    }

    #[test]
    fn file_errors_read_as_toml_words_them() {
        let bad = FILE.replace("interval_ms = 1000", "interval_ms = \"x\"");
        let plain = toml::from_str::<Config>(&bad)
            .expect_err("bad file")
            .to_string()
            .trim_end()
            .replace('\n', " ");
        for vars in [vec![], vec![("SCO_T__AGENT__ENABLED", "true")]] {
            let err = from_toml::<Config, _, _, _>(&bad, "SCO_T__", vars).expect_err("bad file");
            assert_eq!(err, LoadError::File(plain.clone()));
        }
        let err =
            from_toml::<Config, _, _, _>("[agent", "SCO_T__", [("A", "b")]).expect_err("syntax");
        assert!(matches!(err, LoadError::File(_)), "{err:?}");
        // A value the variable fixes is no error.
        let l = from_toml::<Config, _, _, _>(&bad, "SCO_T__", [("SCO_T__AGENT__INTERVAL_MS", "5")])
            .expect("the variable replaces the bad value");
        assert_eq!(l.value.agent.interval_ms, 5);
    }

    #[test]
    fn var_names() {
        assert_eq!(
            var_name("SCO_CP__", "auth.token_ttl_secs"),
            "SCO_CP__AUTH__TOKEN_TTL_SECS"
        );
        assert_eq!(var_name("SCO_CP__", "data_dir"), "SCO_CP__DATA_DIR");
        assert_eq!(edit_distance("agent.intervalms", "agent.interval_ms"), 1);
    }
}
