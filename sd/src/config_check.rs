//! Rejecting `config.json` fields this crate does not implement.
//!
//! diffusers configs carry many switches (class embeddings, SDXL's `addition_embed_type`, …)
//! that SD 1.x/2.x leave at their defaults. Rather than model each one, a component lists the
//! values it accepts per field; a field that is absent takes its default and is fine, a field
//! with any other value is a `Config` error naming it.

use serde_json::Value;

/// One accepted value of a field.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Accepted {
    Null,
    Bool(bool),
    Number(f64),
    Text(&'static str),
}

impl Accepted {
    fn matches(self, value: &Value) -> bool {
        match (self, value) {
            (Accepted::Null, Value::Null) => true,
            (Accepted::Bool(a), Value::Bool(b)) => a == *b,
            (Accepted::Number(a), Value::Number(b)) => b.as_f64() == Some(a),
            (Accepted::Text(a), Value::String(b)) => a == b,
            _ => false,
        }
    }

    fn describe(self) -> String {
        match self {
            Accepted::Null => "null".to_string(),
            Accepted::Bool(b) => b.to_string(),
            Accepted::Number(n) => n.to_string(),
            Accepted::Text(t) => format!("\"{t}\""),
        }
    }
}

/// Checks every `(field, accepted values)` rule against `raw`; a list value is accepted when
/// each of its elements is (diffusers allows per-block lists for several switches).
pub(crate) fn check_fields(raw: &Value, rules: &[(&str, &[Accepted])]) -> Result<(), String> {
    for (field, accepted) in rules {
        let Some(value) = raw.get(field) else {
            continue;
        };
        let ok = |v: &Value| accepted.iter().any(|a| a.matches(v));
        let fine = match value {
            Value::Array(items) => items.iter().all(ok),
            other => ok(other),
        };
        if !fine {
            let allowed: Vec<String> = accepted.iter().map(|a| a.describe()).collect();
            return Err(format!(
                "{field} = {value} is not supported (supported: {})",
                allowed.join(" or ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn absent_and_default_values_pass_and_others_name_the_field() {
        let rules: &[(&str, &[Accepted])] = &[
            ("addition_embed_type", &[Accepted::Null]),
            ("only_cross_attention", &[Accepted::Bool(false)]),
            ("conv_in_kernel", &[Accepted::Number(3.0)]),
        ];
        let ok = json!({"only_cross_attention": [false, false], "conv_in_kernel": 3});
        assert_eq!(check_fields(&ok, rules), Ok(()));
        let bad = json!({"addition_embed_type": "text_time"});
        let message = check_fields(&bad, rules).unwrap_err();
        assert!(message.starts_with("addition_embed_type = \"text_time\""), "{message}");
        let bad_list = json!({"only_cross_attention": [false, true]});
        assert!(check_fields(&bad_list, rules).unwrap_err().starts_with("only_cross_attention"));
    }
}
