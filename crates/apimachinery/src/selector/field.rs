//! Field selectors with upstream semantics (`k8s.io/apimachinery/pkg/fields`).
//!
//! The string form is comma-separated terms `field=value`, `field==value` or
//! `field!=value`, all of which must hold. Values escape `\`, `,` and `=` with
//! a backslash; field names are taken literally up to the first operator. A
//! field an object does not have reads as the empty string, so `a=` matches
//! objects without `a` and `a!=x` matches them too.

use std::fmt;
use std::str::FromStr;

/// Why a field selector is unusable. The text is upstream's; the apiserver
/// returns it as a 400.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    /// A term has no operator: `invalid selector: 'a,b=c'; can't understand 'a'`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    Syntax { selector: String, term: String },
    /// A backslash not followed by `\`, `,` or `=`, or a trailing backslash.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// A bare `,` or `=` inside a value. Upstream prints the code point as a number.
    #[error("invalid field selector: unescaped character in value: {}", u32::from(*.0))]
    UnescapedCharacter(char),
    /// A field the resource's field label conversion does not know.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
    /// A field other than `metadata.name`/`metadata.namespace`, for resources
    /// with only the default conversion (upstream's `DefaultMetaV1FieldSelectorConversion`).
    #[error("{0:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"")]
    UnknownField(String),
}

/// Whether a term requires equality or inequality (`=` and `==` are the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    Equals,
    NotEquals,
}

/// One `field=value` or `field!=value` term, with the value unescaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub operator: FieldOperator,
    pub value: String,
}

impl FieldTerm {
    fn matches(&self, actual: Option<&str>) -> bool {
        let actual = actual.unwrap_or("");
        match self.operator {
            FieldOperator::Equals => actual == self.value,
            FieldOperator::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for FieldTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{}{}", self.field, op, escape_value(&self.value))
    }
}

/// A field selector: terms that must all hold. Empty selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

/// The field names upstream always accepts (`DefaultMetaV1FieldSelectorConversion`).
pub const DEFAULT_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

impl FieldSelector {
    /// Selects everything.
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// Parses `?fieldSelector=` (upstream's `fields.ParseSelector`). Terms are
    /// sorted as raw text, as upstream does, so the string form is canonical.
    pub fn parse(selector: &str) -> Result<Self, FieldSelectorError> {
        let mut parts = split_terms(selector);
        parts.sort_unstable();
        let mut terms = Vec::with_capacity(parts.len());
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((field, operator, raw)) = split_term(part) else {
                return Err(FieldSelectorError::Syntax { selector: selector.to_string(), term: part.to_string() });
            };
            terms.push(FieldTerm { field: field.to_string(), operator, value: unescape_value(raw)? });
        }
        Ok(FieldSelector { terms })
    }

    /// A selector requiring each field to equal its value (upstream's `SelectorFromSet`).
    pub fn from_set<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut terms: Vec<FieldTerm> = fields
            .into_iter()
            .map(|(f, v)| FieldTerm { field: f.to_string(), operator: FieldOperator::Equals, value: v.to_string() })
            .collect();
        terms.sort_by(|a, b| a.field.cmp(&b.field));
        FieldSelector { terms }
    }

    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    /// True when the selector does not restrict anything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether every term holds; `get` reads a field of the object, `None`
    /// (absent) reads as the empty string.
    pub fn matches<F, S>(&self, get: F) -> bool
    where
        F: Fn(&str) -> Option<S>,
        S: AsRef<str>,
    {
        self.terms.iter().all(|t| t.matches(get(&t.field).as_ref().map(AsRef::as_ref)))
    }

    /// [`matches`](Self::matches) over an object's field set as (field, value) pairs,
    /// as a resource's `GetAttrs`/field set function would produce.
    pub fn matches_fields(&self, fields: &[(&str, &str)]) -> bool {
        self.matches(|name| fields.iter().find(|(f, _)| *f == name).map(|(_, v)| *v))
    }

    /// The field names used, in term order (may repeat).
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.terms.iter().map(|t| t.field.as_str())
    }

    /// Rejects fields outside `supported` with upstream's
    /// `field label not supported: <field>`.
    pub fn check_supported(&self, supported: &[&str]) -> Result<(), FieldSelectorError> {
        match self.field_names().find(|f| !supported.contains(f)) {
            Some(field) => Err(FieldSelectorError::UnsupportedField(field.to_string())),
            None => Ok(()),
        }
    }

    /// Rejects fields other than `metadata.name` and `metadata.namespace`, with the
    /// message upstream uses for resources that register no field label conversion.
    pub fn check_default_fields(&self) -> Result<(), FieldSelectorError> {
        match self.field_names().find(|f| !DEFAULT_FIELDS.contains(f)) {
            Some(field) => Err(FieldSelectorError::UnknownField(field.to_string())),
            None => Ok(()),
        }
    }

    /// The value `field` must equal, if a term requires it (upstream's
    /// `RequiresExactMatch`): lets a list of `metadata.name=x` or
    /// `spec.nodeName=n` use an index instead of a scan.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms.iter().find(|t| t.field == field && t.operator == FieldOperator::Equals).map(|t| t.value.as_str())
    }

    /// Renames fields and rewrites values (upstream's `Transform`), e.g. to map a
    /// legacy field label onto its current name; a term mapped to `None` is dropped.
    pub fn transform<F, E>(&self, mut f: F) -> Result<Self, E>
    where
        F: FnMut(&str, &str) -> Result<Option<(String, String)>, E>,
    {
        let mut terms = Vec::with_capacity(self.terms.len());
        for t in &self.terms {
            if let Some((field, value)) = f(&t.field, &t.value)? {
                terms.push(FieldTerm { field, operator: t.operator, value });
            }
        }
        Ok(FieldSelector { terms })
    }
}

/// The canonical string form: terms joined by `,`, values escaped.
impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = FieldSelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

/// Escapes `\`, `,` and `=` for use in a field selector value.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Undoes [`escape_value`]; bare `,`/`=` and unknown escapes are errors.
pub fn unescape_value(raw: &str) -> Result<String, FieldSelectorError> {
    let mut out = String::with_capacity(raw.len());
    let mut escaped = false;
    for c in raw.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(FieldSelectorError::InvalidEscape(format!("\\{c}")));
            }
            out.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ',' | '=' => return Err(FieldSelectorError::UnescapedCharacter(c)),
            _ => out.push(c),
        }
    }
    if escaped {
        return Err(FieldSelectorError::InvalidEscape("\\".to_string()));
    }
    Ok(out)
}

/// Splits on commas that are not escaped; escapes stay in the terms.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in selector.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits a term at its first operator, trying `!=`, then `==`, then `=` at each position.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, operator) in
            [("!=", FieldOperator::NotEquals), ("==", FieldOperator::Equals), ("=", FieldOperator::Equals)]
        {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], operator, value));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn empty_selector_selects_everything() {
        let s = parse("");
        assert!(s.is_empty());
        assert!(s.matches_fields(&[("metadata.name", "x")]));
        assert_eq!(s.to_string(), "");
    }

    #[test]
    fn equality_terms_must_all_hold() {
        let fields = [("metadata.name", "web"), ("status.phase", "Running")];
        assert!(parse("metadata.name=web").matches_fields(&fields));
        assert!(parse("metadata.name==web").matches_fields(&fields));
        assert!(parse("metadata.name=web,status.phase!=Pending").matches_fields(&fields));
        assert!(!parse("metadata.name=web,status.phase=Pending").matches_fields(&fields));
        assert!(!parse("metadata.name!=web").matches_fields(&fields));
    }

    #[test]
    fn absent_fields_read_as_empty_strings() {
        assert!(parse("spec.nodeName=").matches_fields(&[]));
        assert!(parse("spec.nodeName!=node-1").matches_fields(&[]));
        assert!(!parse("spec.nodeName=node-1").matches_fields(&[]));
    }

    #[test]
    fn matching_accepts_a_lookup_closure_returning_owned_or_borrowed_values() {
        let s = parse("spec.nodeName=n1");
        assert!(s.matches(|f| (f == "spec.nodeName").then(|| "n1".to_string())));
        assert!(s.matches(|f| (f == "spec.nodeName").then_some("n1")));
    }

    #[test]
    fn escaped_values_round_trip() {
        let s = parse(r"metadata.annotations.a=x\,y\=z\\w,b=c");
        assert_eq!(s.terms()[1].value, r"x,y=z\w");
        assert_eq!(s.to_string(), r"b=c,metadata.annotations.a=x\,y\=z\\w");
        assert_eq!(parse(&s.to_string()), s);
    }

    #[test]
    fn terms_are_sorted_and_double_equals_is_canonicalised() {
        assert_eq!(parse("b==2,a!=1").to_string(), "a!=1,b=2");
    }

    #[test]
    fn syntax_and_escape_errors_use_upstream_wording() {
        let err = |s: &str| FieldSelector::parse(s).unwrap_err().to_string();
        assert_eq!(err("a,b=c"), "invalid selector: 'a,b=c'; can't understand 'a'");
        assert_eq!(err(r"a=b\x"), r"invalid field selector: invalid escape sequence: \x");
        assert_eq!(err(r"a=b\"), r"invalid field selector: invalid escape sequence: \");
        assert_eq!(err("a=b=c"), "invalid field selector: unescaped character in value: 61");
    }

    #[test]
    fn unsupported_fields_are_named() {
        let s = parse("metadata.name=a,foo=b");
        assert_eq!(
            s.check_supported(&["metadata.name", "spec.nodeName"]).unwrap_err().to_string(),
            "field label not supported: foo"
        );
        assert_eq!(
            s.check_default_fields().unwrap_err().to_string(),
            "\"foo\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert!(parse("metadata.namespace=x").check_default_fields().is_ok());
        assert_eq!(s.field_names().collect::<Vec<_>>(), vec!["foo", "metadata.name"]);
    }

    #[test]
    fn exact_match_supports_indexing_by_name_and_node() {
        let s = parse("spec.nodeName=node-1,status.phase!=Succeeded");
        assert_eq!(s.requires_exact_match("spec.nodeName"), Some("node-1"));
        assert_eq!(s.requires_exact_match("status.phase"), None);
        assert_eq!(parse("metadata.name==x").requires_exact_match("metadata.name"), Some("x"));
    }

    #[test]
    fn transform_renames_fields() {
        let s = parse("name=x");
        let t = s
            .transform(|f, v| {
                Ok::<_, FieldSelectorError>(Some((if f == "name" { "metadata.name" } else { f }.to_string(), v.into())))
            })
            .unwrap();
        assert_eq!(t.to_string(), "metadata.name=x");
    }
}
