//! The layers a spec is read from, after its TOML file: `DIFFPROBE_SECTION__KEY` variables, then
//! `--set key=value` overrides, each a figment provider that remembers the keys it set so that a
//! validation error names the layer instead of the file.

use serde::Deserialize;

use crate::error::SpecError;

/// `DIFFPROBE_SECTION__KEY=value` variables. Only names with a `__` section separator are spec
/// keys, so `DIFFPROBE_TOKEN` and other plain variables never leak into the spec.
pub(super) fn env_provider(env: &[(String, String)]) -> Layer {
    let mut root = figment::value::Dict::new();
    let mut keys = Vec::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("DIFFPROBE_") else { continue };
        if !rest.contains("__") {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        keys.push(path.join("."));
        insert_path(&mut root, &path, parse_value(value));
    }
    Layer { name: ENV_LAYER, keys, dict: root }
}

/// Source name, in errors, of values from `DIFFPROBE_SECTION__KEY` variables.
pub(super) const ENV_LAYER: &str = "environment";
/// Source name, in errors, of values from `--set`.
pub(super) const SET_LAYER: &str = "--set";

/// An override layer with a name, so figment tags its values and errors say where a bad value
/// came from (figment's `Serialized` names itself by Rust type).
pub(super) struct Layer {
    pub(super) name: &'static str,
    /// Dotted keys this layer sets.
    pub(super) keys: Vec<String>,
    pub(super) dict: figment::value::Dict,
}

impl figment::Provider for Layer {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(self.name)
    }
    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Ok(figment::Profile::Default.collect(self.dict.clone()))
    }
}

pub(super) fn insert_path(
    dict: &mut figment::value::Dict,
    path: &[String],
    value: figment::value::Value,
) {
    use figment::value::{Dict, Value};
    if path.len() == 1 {
        dict.insert(path[0].clone(), value);
        return;
    }
    let entry = dict.entry(path[0].clone()).or_insert_with(|| Value::from(Dict::new()));
    if let Value::Dict(_, inner) = entry {
        insert_path(inner, &path[1..], value);
    }
}

/// Parses `key.path=value`; the value is read as TOML (number, bool, array, string) and falls
/// back to a plain string.
pub(super) fn parse_set(set: &str) -> Result<(String, figment::value::Value), SpecError> {
    let Some((key, value)) = set.split_once('=') else {
        return Err(SpecError::new("--set", set, "expected key.path=value"));
    };
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(SpecError::new(
            "--set",
            key,
            "expected a dotted key path like analysis.attribute_probe.alpha",
        ));
    }
    Ok((key.to_string(), parse_value(value.trim())))
}

fn parse_value(raw: &str) -> figment::value::Value {
    #[derive(Deserialize)]
    struct Holder {
        v: figment::value::Value,
    }
    match toml::from_str::<toml::Value>(&format!("v = {raw}")) {
        // No spec key is a TOML date or time: `01:00:00` (slurm.time) stays a string.
        Ok(t) if matches!(t.get("v"), Some(toml::Value::Datetime(_))) => raw.into(),
        _ => toml::from_str::<Holder>(&format!("v = {raw}"))
            .map(|h| h.v)
            .unwrap_or_else(|_| raw.into()),
    }
}

pub(super) fn figment_error(file: &str, e: figment::Error) -> SpecError {
    let from_layer = match &e.metadata {
        Some(m) if m.name == ENV_LAYER || m.name == SET_LAYER => Some(m.name.to_string()),
        _ => None,
    };
    let source = from_layer.clone().unwrap_or_else(|| file.to_string());
    let mut key = e.path.join(".");
    // figment's path already ends with the offending field for some kinds; append it only if not.
    let mut with_field = |field: &str| {
        if e.path.last().map(String::as_str) != Some(field) {
            key = if key.is_empty() { field.to_string() } else { format!("{key}.{field}") };
        }
    };
    let message = match &e.kind {
        figment::error::Kind::UnknownField(field, expected) => {
            with_field(field);
            format!("unknown key, expected one of: {}", expected.join(", "))
        }
        figment::error::Kind::MissingField(field) => {
            with_field(field);
            "missing key".to_string()
        }
        figment::error::Kind::InvalidType(actual, expected) => {
            let hint = if from_layer.is_some() && expected == "a string" {
                " (the value is read as TOML; put it in double quotes to pass a string)"
            } else {
                ""
            };
            format!("expected {expected}, found {actual}{hint}")
        }
        figment::error::Kind::UnknownVariant(found, expected) => {
            format!("unknown value {found:?}, expected one of: {}", expected.join(", "))
        }
        other => other.to_string(),
    };
    SpecError::new(source, if key.is_empty() { "(top level)".into() } else { key }, message)
}
