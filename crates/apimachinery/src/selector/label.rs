//! Label selectors with upstream semantics (`k8s.io/apimachinery/pkg/labels`).
//!
//! Two sources build a [`LabelSelector`]:
//! - the string form of `?labelSelector=` ([`LabelSelector::parse`]):
//!   `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x,y)`, `a`, `!a`, `a>1`, `a<1`,
//!   comma-separated requirements all of which must hold;
//! - a `metav1.LabelSelector` object ([`LabelSelector::from_json`]) with
//!   `matchLabels` and `matchExpressions`.
//!
//! Upstream distinguishes two special selectors, and so do we: an empty
//! selector (`""` or `{}`) matches everything, while a null/absent
//! `metav1.LabelSelector` matches nothing ([`LabelSelector::nothing`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::status::{FieldError, FieldErrorKind};
use crate::validation::{is_qualified_name, is_valid_label_value};

/// Why a label selector could not be built. The text is upstream's; the
/// apiserver returns it as a 400 (query parameter) or uses it in validation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LabelSelectorError {
    /// The string form is malformed, e.g.
    /// `unable to parse requirement: found '', expected: identifier` or
    /// `found ')', expected: !, identifier, or 'end of string'`.
    #[error("{0}")]
    Parse(String),
    /// A requirement is well-formed but invalid (bad key, value or value count):
    /// upstream's aggregated field errors, e.g. `values[0][app]: Invalid value: "a b": ...`.
    #[error("{0}")]
    Invalid(String),
    /// A `matchExpressions` operator other than In, NotIn, Exists, DoesNotExist.
    #[error("{0:?} is not a valid label selector operator")]
    UnknownOperator(String),
    /// The JSON does not have the shape of a `metav1.LabelSelector`.
    #[error("invalid label selector: {0}")]
    Malformed(String),
}

/// A requirement's operator (upstream's `selection.Operator`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

impl Operator {
    /// Upstream's string for the operator (`in`, `notin`, `=`, `==`, `!=`, `exists`, `!`, `gt`, `lt`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// A set of labels a selector can be matched against.
pub trait Labels {
    /// The value of the label `key`, if present.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: std::hash::BuildHasher> Labels for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// `metadata.labels` as held in a JSON object; non-string values count as absent.
impl Labels for Map<String, Value> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

impl Labels for [(&str, &str)] {
    fn label(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

/// One requirement: a key, an operator and its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Upstream's `NewRequirement`: checks the key, the values and their count
    /// for the operator. The empty string is a valid value.
    pub fn new(key: impl Into<String>, operator: Operator, values: Vec<String>) -> Result<Self, LabelSelectorError> {
        let key = key.into();
        let mut errs: Vec<String> = Vec::new();
        let key_errs = is_qualified_name(&key);
        if !key_errs.is_empty() {
            errs.push(invalid_message("key", &quote(&key), &key_errs.join("; ")));
        }
        let shown_values = || serde_json::to_string(&values).unwrap_or_default();
        match operator {
            Operator::In | Operator::NotIn => {
                if values.is_empty() {
                    errs.push(invalid_message(
                        "values",
                        &shown_values(),
                        "for 'in', 'notin' operators, values set can't be empty",
                    ));
                }
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
                if values.len() != 1 {
                    errs.push(invalid_message(
                        "values",
                        &shown_values(),
                        "exact-match compatibility requires one single value",
                    ));
                }
            }
            Operator::Exists | Operator::DoesNotExist => {
                if !values.is_empty() {
                    errs.push(invalid_message(
                        "values",
                        &shown_values(),
                        "values set must be empty for exists and does not exist",
                    ));
                }
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(invalid_message(
                        "values",
                        &shown_values(),
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(invalid_message(
                            &format!("values[{i}]"),
                            &quote(v),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            let value_errs = is_valid_label_value(v);
            if !value_errs.is_empty() {
                errs.push(invalid_message(&format!("values[{i}][{key}]"), &quote(v), &value_errs.join("; ")));
            }
        }
        match errs.len() {
            0 => Ok(Requirement { key, operator, values }),
            1 => Err(LabelSelectorError::Invalid(errs.remove(0))),
            _ => Err(LabelSelectorError::Invalid(format!("[{}]", errs.join(", ")))),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values as given (the string parser sorts and deduplicates them).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn has_value(&self, value: &str) -> bool {
        self.values.iter().any(|v| v == value)
    }

    /// Upstream's `Requirement.Matches`: NotIn and `!=` match when the label is
    /// absent; Gt/Lt compare as 64-bit integers and fail on anything else.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let value = labels.label(&self.key);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => value.is_some_and(|v| self.has_value(v)),
            Operator::NotIn | Operator::NotEquals => value.is_none_or(|v| !self.has_value(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(have) = value.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let [want] = self.values.as_slice() else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

/// Upstream's `Requirement.String`: `!a`, `a`, `a=b`, `a in (x,y)`; set values are sorted.
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let (op, set) = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => ("=", false),
            Operator::DoubleEquals => ("==", false),
            Operator::NotEquals => ("!=", false),
            Operator::GreaterThan => (">", false),
            Operator::LessThan => ("<", false),
            Operator::In => (" in ", true),
            Operator::NotIn => (" notin ", true),
        };
        f.write_str(op)?;
        if set {
            f.write_str("(")?;
        }
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        f.write_str(&values.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A label selector: requirements that must all hold, sorted by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    /// Upstream's `labels.Nothing()`: what a null `metav1.LabelSelector` selects.
    nothing: bool,
}

impl LabelSelector {
    /// Matches every set of labels (`""`, `{}`).
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// Matches no set of labels: what a null or absent `metav1.LabelSelector` means.
    pub fn nothing() -> Self {
        LabelSelector { requirements: Vec::new(), nothing: true }
    }

    /// A selector from requirements, sorted by key as upstream's `Add` does.
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements, nothing: false }
    }

    /// Upstream's `ValidatedSelectorFromSet`: every label must equal the given
    /// value (Service and ReplicationController selectors). An empty set selects everything.
    pub fn from_set<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, LabelSelectorError> {
        let requirements = labels
            .into_iter()
            .map(|(k, v)| Requirement::new(k, Operator::Equals, vec![v.to_string()]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_requirements(requirements))
    }

    /// Parses the string form used by `?labelSelector=` (upstream's `labels.Parse`).
    pub fn parse(selector: &str) -> Result<Self, LabelSelectorError> {
        let mut parser = Parser { items: lex(selector), position: 0 };
        let requirements = parser.parse()?;
        Ok(Self::from_requirements(requirements))
    }

    /// Builds a selector from a `metav1.LabelSelector` object (upstream's
    /// `LabelSelectorAsSelector`): `{}` selects everything, `null` selects nothing.
    pub fn from_json(selector: &Value) -> Result<Self, LabelSelectorError> {
        let object = match selector {
            Value::Null => return Ok(Self::nothing()),
            Value::Object(object) => object,
            other => return Err(LabelSelectorError::Malformed(format!("expected an object, got {other}"))),
        };
        let mut requirements = Vec::new();
        match object.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (k, v) in labels {
                    let Some(v) = v.as_str() else {
                        return Err(LabelSelectorError::Malformed(format!("matchLabels[{k}] must be a string")));
                    };
                    requirements.push(Requirement::new(k.as_str(), Operator::Equals, vec![v.to_string()])?);
                }
            }
            Some(_) => return Err(LabelSelectorError::Malformed("matchLabels must be an object".into())),
        }
        match object.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(expressions)) => {
                for (i, expr) in expressions.iter().enumerate() {
                    let (key, operator, values) = expression_parts(expr)
                        .map_err(|what| LabelSelectorError::Malformed(format!("matchExpressions[{i}]: {what}")))?;
                    let operator = match operator {
                        "In" => Operator::In,
                        "NotIn" => Operator::NotIn,
                        "Exists" => Operator::Exists,
                        "DoesNotExist" => Operator::DoesNotExist,
                        other => return Err(LabelSelectorError::UnknownOperator(other.to_string())),
                    };
                    requirements.push(Requirement::new(key, operator, values)?);
                }
            }
            Some(_) => return Err(LabelSelectorError::Malformed("matchExpressions must be an array".into())),
        }
        Ok(Self::from_requirements(requirements))
    }

    /// Like [`from_json`](Self::from_json), for a field that may be absent: absent selects nothing.
    pub fn from_optional_json(selector: Option<&Value>) -> Result<Self, LabelSelectorError> {
        selector.map_or_else(|| Ok(Self::nothing()), Self::from_json)
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True when the selector does not restrict anything (upstream's `Empty`);
    /// false for [`nothing`](Self::nothing).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True for the selector that matches nothing.
    pub fn selects_nothing(&self) -> bool {
        self.nothing
    }

    /// Whether every requirement holds for `labels`.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// [`matches`](Self::matches) over `metadata.labels` held as a JSON object.
    pub fn matches_json(&self, labels: &Map<String, Value>) -> bool {
        self.matches(labels)
    }

    /// [`matches`](Self::matches) over an object's `metadata.labels` (absent = no labels).
    pub fn matches_object(&self, object: &Value) -> bool {
        match object.pointer("/metadata/labels").and_then(Value::as_object) {
            Some(labels) => self.matches(labels),
            None => self.matches(&Map::new()),
        }
    }

    /// Upstream's `RequiresExactMatch`: the one value the selector requires for `label`
    /// (`=`, `==` or a single-valued `in`), so callers can use an index.
    pub fn requires_exact_match(&self, label: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == label)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

/// The canonical string form (upstream's `String`); empty for everything and nothing.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for LabelSelector {
    type Err = LabelSelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LabelSelector::parse(s)
    }
}

/// Upstream's `ValidateLabelSelector` for a `metav1.LabelSelector` at `path`
/// (e.g. `spec.selector`): field errors for bad keys, values and operators.
pub fn validate_label_selector(selector: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(object) = selector.as_object() else {
        return errs;
    };
    if let Some(labels) = object.get("matchLabels").and_then(Value::as_object) {
        errs.extend(validate_labels(labels, &format!("{path}.matchLabels")));
    }
    let Some(expressions) = object.get("matchExpressions").and_then(Value::as_array) else {
        return errs;
    };
    for (i, expr) in expressions.iter().enumerate() {
        let at = format!("{path}.matchExpressions[{i}]");
        let operator = expr.get("operator").and_then(Value::as_str).unwrap_or("");
        let values = expr.get("values").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        match operator {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(field_error(
                        FieldErrorKind::Required,
                        format!("{at}.values"),
                        None,
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(field_error(
                        FieldErrorKind::Forbidden,
                        format!("{at}.values"),
                        None,
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(field_error(
                FieldErrorKind::Invalid,
                format!("{at}.operator"),
                Some(quote(other)),
                "not a valid selector operator",
            )),
        }
        let key = expr.get("key").and_then(Value::as_str).unwrap_or("");
        for msg in is_qualified_name(key) {
            errs.push(field_error(FieldErrorKind::Invalid, format!("{at}.key"), Some(quote(key)), &msg));
        }
        for (j, value) in values.iter().enumerate() {
            let value = value.as_str().unwrap_or("");
            for msg in is_valid_label_value(value) {
                errs.push(field_error(FieldErrorKind::Invalid, format!("{at}.values[{j}]"), Some(quote(value)), &msg));
            }
        }
    }
    errs
}

/// Upstream's `ValidateLabels` for a labels map at `path` (e.g. `metadata.labels`).
pub fn validate_labels(labels: &Map<String, Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        for msg in is_qualified_name(k) {
            errs.push(field_error(FieldErrorKind::Invalid, path.to_string(), Some(quote(k)), &msg));
        }
        let v = v.as_str().unwrap_or("");
        for msg in is_valid_label_value(v) {
            errs.push(field_error(FieldErrorKind::Invalid, path.to_string(), Some(quote(v)), &msg));
        }
    }
    errs
}

fn field_error(kind: FieldErrorKind, field: String, value: Option<String>, detail: &str) -> FieldError {
    FieldError { kind, field, value, detail: detail.to_string() }
}

/// Go's `%q` for the strings we show.
fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// Upstream's `field.Invalid(...).Error()`.
fn invalid_message(field: &str, shown_value: &str, detail: &str) -> String {
    format!("{field}: Invalid value: {shown_value}: {detail}")
}

fn expression_parts(expr: &Value) -> Result<(&str, &str, Vec<String>), String> {
    let expr = expr.as_object().ok_or("must be an object")?;
    let key = expr.get("key").and_then(Value::as_str).ok_or("key must be a string")?;
    let operator = expr.get("operator").and_then(Value::as_str).ok_or("operator must be a string")?;
    let values = match expr.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or("values must be strings"))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("values must be an array".into()),
    };
    Ok((key, operator, values))
}

// === the string form ===

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Error,
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits the selector into tokens, ending with [`Token::End`].
fn lex(s: &str) -> Vec<(Token, String)> {
    let bytes = s.as_bytes();
    let mut items = Vec::new();
    let mut pos = 0;
    loop {
        while pos < bytes.len() && is_whitespace(bytes[pos]) {
            pos += 1;
        }
        if pos >= bytes.len() {
            items.push((Token::End, String::new()));
            return items;
        }
        let start = pos;
        if is_special(bytes[pos]) {
            // The longest run of special symbols that still spells a token.
            let mut last: Option<(Token, usize)> = None;
            while pos < bytes.len() && is_special(bytes[pos]) {
                pos += 1;
                match keyword(&s[start..pos]) {
                    Some(token) => last = Some((token, pos)),
                    None if last.is_some() => break,
                    None => {}
                }
            }
            match last {
                Some((token, end)) => {
                    pos = end;
                    items.push((token, s[start..end].to_string()));
                }
                None => items.push((Token::Error, format!("error expected: keyword found '{}'", &s[start..pos]))),
            }
        } else {
            while pos < bytes.len() && !is_special(bytes[pos]) && !is_whitespace(bytes[pos]) {
                pos += 1;
            }
            let word = &s[start..pos];
            let token = match keyword(word) {
                Some(token @ (Token::In | Token::NotIn)) => token,
                _ => Token::Identifier,
            };
            items.push((token, word.to_string()));
        }
    }
}

/// Whether `in`/`notin` are operators (after a key) or plain identifiers (keys and values).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

impl Parser {
    fn lookahead(&self, context: Context) -> (Token, String) {
        let (token, literal) = self.items[self.position.min(self.items.len() - 1)].clone();
        (Self::in_context(token, context), literal)
    }

    fn consume(&mut self, context: Context) -> (Token, String) {
        let item = self.lookahead(context);
        self.position += 1;
        item
    }

    fn in_context(token: Token, context: Context) -> Token {
        match (token, context) {
            (Token::In | Token::NotIn, Context::Values) => Token::Identifier,
            _ => token,
        }
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, LabelSelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self
                        .parse_requirement()
                        .map_err(|e| LabelSelectorError::Parse(format!("unable to parse requirement: {e}")))?;
                    requirements.push(r);
                    let (token, literal) = self.consume(Context::Values);
                    match token {
                        Token::End => return Ok(requirements),
                        Token::Comma => {
                            let (next, literal) = self.lookahead(Context::Values);
                            if next != Token::Identifier && next != Token::DoesNotExist {
                                return Err(LabelSelectorError::Parse(format!(
                                    "found '{literal}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(LabelSelectorError::Parse(format!(
                                "found '{literal}', expected: ',' or 'end of string'"
                            )))
                        }
                    }
                }
                Token::End => return Ok(requirements),
                _ => {
                    return Err(LabelSelectorError::Parse(format!(
                        "found '{literal}', expected: !, identifier, or 'end of string'"
                    )))
                }
            }
        }
    }

    /// One requirement; the error text is what follows `unable to parse requirement: `.
    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, operator) = self.parse_key_and_infer_operator()?;
        if let Some(operator) = operator {
            return Requirement::new(key, operator, Vec::new()).map_err(|e| e.to_string());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => vec![self.parse_exact_value()?],
        };
        Requirement::new(key, operator, values).map_err(|e| e.to_string())
    }

    /// The key, with `Exists`/`DoesNotExist` when no binary operator follows.
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let (mut token, mut literal) = self.consume(Context::Values);
        let negated = token == Token::DoesNotExist;
        if negated {
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(format!("found '{literal}', expected: identifier"));
        }
        let key_errs = is_qualified_name(&literal);
        if !key_errs.is_empty() {
            // Upstream validates with a nil field path here, which prints as `<nil>`.
            return Err(invalid_message("<nil>", &quote(&literal), &key_errs.join("; ")));
        }
        let (next, _) = self.lookahead(Context::Values);
        let operator = if negated {
            Some(Operator::DoesNotExist)
        } else if next == Token::End || next == Token::Comma {
            Some(Operator::Exists)
        } else {
            None
        };
        Ok((literal, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => return Err(format!("found '{literal}', expected: in, notin, =, ==, !=, gt, lt")),
        })
    }

    /// `(x,y)`: sorted and deduplicated; empty entries count as the empty value.
    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenPar {
            return Err(format!("found '{literal}' expected: '('"));
        }
        let (token, literal) = self.lookahead(Context::Values);
        let mut values = match token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                let (token, _) = self.consume(Context::Values);
                if token != Token::ClosedPar {
                    return Err(format!("found '{literal}', expected: ')'"));
                }
                values
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                vec![String::new()]
            }
            _ => return Err(format!("found '{literal}', expected: ',', ')' or identifier")),
        };
        values.sort();
        values.dedup();
        Ok(values)
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut values = Vec::new();
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    values.push(literal);
                    let (next, literal) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        _ => return Err(format!("found '{literal}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    // `(,`, `,,` and `,)` all stand for the empty value.
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    let (next, _) = self.lookahead(Context::Values);
                    if next == Token::ClosedPar {
                        values.push(String::new());
                        return Ok(values);
                    }
                    if next == Token::Comma {
                        self.consume(Context::Values);
                        values.push(String::new());
                    }
                }
                _ => return Err(format!("found '{literal}', expected: ',', or identifier")),
            }
        }
    }

    /// The single value after `=`, `==`, `!=`, `>` or `<`; empty when none follows.
    fn parse_exact_value(&mut self) -> Result<String, String> {
        let (token, _) = self.lookahead(Context::Values);
        if token == Token::End || token == Token::Comma {
            return Ok(String::new());
        }
        let (token, literal) = self.consume(Context::Values);
        if token == Token::Identifier {
            Ok(literal)
        } else {
            Err(format!("found '{literal}', expected: identifier"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn parse(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn empty_string_selects_everything() {
        let s = parse("");
        assert!(s.is_empty());
        assert!(s.matches(&labels(&[])));
        assert!(parse("  ").is_empty());
        assert_eq!(s.to_string(), "");
    }

    #[test]
    fn equality_and_inequality_match_as_upstream() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(parse("app=web").matches(&l));
        assert!(parse("app==web").matches(&l));
        assert!(!parse("app!=web").matches(&l));
        assert!(parse("app!=db").matches(&l));
        // != matches when the label is absent.
        assert!(parse("missing!=x").matches(&l));
        assert!(!parse("missing=x").matches(&l));
        assert!(parse("app=web,tier=front").matches(&l));
        assert!(!parse("app=web,tier=back").matches(&l));
    }

    #[test]
    fn set_operators_and_existence_match_as_upstream() {
        let l = labels(&[("env", "prod"), ("app", "web")]);
        assert!(parse("env in (prod,dev)").matches(&l));
        assert!(!parse("env in (qa, dev)").matches(&l));
        assert!(parse("env notin (qa,dev)").matches(&l));
        assert!(parse("missing notin (qa)").matches(&l));
        assert!(parse("app").matches(&l));
        assert!(!parse("!app").matches(&l));
        assert!(parse("!missing").matches(&l));
        assert!(parse("app,!missing,env in (prod)").matches(&l));
    }

    #[test]
    fn greater_and_less_than_compare_integers() {
        let l = labels(&[("replicas", "5"), ("name", "x")]);
        assert!(parse("replicas>3").matches(&l));
        assert!(!parse("replicas>5").matches(&l));
        assert!(parse("replicas<10").matches(&l));
        assert!(!parse("name>1").matches(&l));
        assert!(!parse("missing<1").matches(&l));
        let err = LabelSelector::parse("replicas>x").unwrap_err().to_string();
        assert_eq!(
            err,
            "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
    }

    #[test]
    fn in_and_notin_are_plain_words_as_keys_and_values() {
        let s = parse("in in (in,notin)");
        assert!(s.matches(&labels(&[("in", "notin")])));
        assert_eq!(s.to_string(), "in in (in,notin)");
    }

    #[test]
    fn empty_values_are_allowed_in_every_position() {
        assert!(parse("a=").matches(&labels(&[("a", "")])));
        assert_eq!(parse("a in ()").requirements()[0].values(), &["".to_string()]);
        assert_eq!(parse("a in (,b)").requirements()[0].values(), &["".to_string(), "b".to_string()]);
        assert_eq!(parse("a in (b,,c)").to_string(), "a in (,b,c)");
    }

    #[test]
    fn display_is_canonical_and_sorted_by_key() {
        let s = parse("z = 1 , a in (y, x), !m, b, c!=d, n>4");
        assert_eq!(s.to_string(), "a in (x,y),b,c!=d,!m,n>4,z=1");
        assert_eq!(parse(&s.to_string()), s);
    }

    #[test]
    fn parse_errors_use_upstream_wording() {
        let err = |s: &str| LabelSelector::parse(s).unwrap_err().to_string();
        assert_eq!(err("a=b,"), "found '', expected: identifier after ','");
        assert_eq!(err("a b"), "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt");
        assert_eq!(err("a=b)"), "found ')', expected: ',' or 'end of string'");
        assert_eq!(err(",a"), "found ',', expected: !, identifier, or 'end of string'");
        assert_eq!(err("a in x"), "unable to parse requirement: found 'x' expected: '('");
        assert_eq!(err("a in (x"), "unable to parse requirement: found '', expected: ',' or ')'");
        assert_eq!(err("a in (x y)"), "unable to parse requirement: found 'y', expected: ',' or ')'");
        assert_eq!(err("!"), "unable to parse requirement: found '', expected: identifier");
        assert_eq!(err("a notin"), "unable to parse requirement: found '' expected: '('");
        assert_eq!(err("a=(b)"), "unable to parse requirement: found '(', expected: identifier");
        assert_eq!(err("a (b)"), "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt");
        assert_eq!(err("!a=b"), "found '=', expected: ',' or 'end of string'");
        assert!(err("-a=b").starts_with(
            "unable to parse requirement: <nil>: Invalid value: \"-a\": name part must consist of alphanumeric characters"
        ));
        assert!(err("a=b c").starts_with("found 'c'"));
        assert!(err("a=-b").starts_with(
            "unable to parse requirement: values[0][a]: Invalid value: \"-b\": a valid label must be an empty string"
        ));
    }

    #[test]
    fn json_selector_builds_requirements_and_matches() {
        let s = LabelSelector::from_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                {"key": "canary", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        assert_eq!(s.to_string(), "app=web,!canary,env in (prod,staging)");
        assert!(s.matches(&labels(&[("app", "web"), ("env", "prod")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "prod"), ("canary", "1")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
    }

    #[test]
    fn empty_json_selector_matches_everything_and_null_matches_nothing() {
        let all = LabelSelector::from_json(&json!({})).unwrap();
        assert!(all.is_empty());
        assert!(all.matches(&labels(&[("a", "b")])));
        let all = LabelSelector::from_json(&json!({"matchLabels": {}, "matchExpressions": []})).unwrap();
        assert!(all.matches(&labels(&[])));

        let none = LabelSelector::from_json(&Value::Null).unwrap();
        assert!(!none.is_empty());
        assert!(none.selects_nothing());
        assert!(!none.matches(&labels(&[])));
        assert!(!LabelSelector::from_optional_json(None).unwrap().matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn json_selector_rejects_bad_operators_and_values() {
        let err =
            LabelSelector::from_json(&json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}))
                .unwrap_err();
        assert_eq!(err.to_string(), "\"Gt\" is not a valid label selector operator");
        let err = LabelSelector::from_json(&json!({"matchExpressions": [{"key": "a", "operator": "In"}]})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty"
        );
        let err = LabelSelector::from_json(
            &json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "values: Invalid value: [\"x\"]: values set must be empty for exists and does not exist"
        );
        assert!(matches!(LabelSelector::from_json(&json!({"matchLabels": []})), Err(LabelSelectorError::Malformed(_))));
    }

    #[test]
    fn validation_reports_path_tagged_field_errors() {
        let errs = validate_label_selector(
            &json!({
                "matchLabels": {"a": "-x"},
                "matchExpressions": [
                    {"key": "b", "operator": "In", "values": []},
                    {"key": "c", "operator": "Exists", "values": ["v"]},
                    {"key": "d", "operator": "Bad"}
                ]
            }),
            "spec.selector",
        );
        let rendered: Vec<String> = errs.iter().map(FieldError::message).collect();
        assert_eq!(rendered.len(), 4, "{rendered:?}");
        assert!(rendered[0].starts_with("spec.selector.matchLabels: Invalid value: \"-x\": a valid label"));
        assert_eq!(
            rendered[1],
            "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
        );
        assert_eq!(
            rendered[2],
            "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
        );
        assert_eq!(
            rendered[3],
            "spec.selector.matchExpressions[2].operator: Invalid value: \"Bad\": not a valid selector operator"
        );
    }

    #[test]
    fn matching_works_over_json_label_maps_and_objects() {
        let s = parse("app=web");
        let obj = json!({"metadata": {"labels": {"app": "web"}}});
        assert!(s.matches_json(obj["metadata"]["labels"].as_object().unwrap()));
        assert!(s.matches_object(&obj));
        assert!(!s.matches_object(&json!({"metadata": {}})));
        assert!(parse("!app").matches_object(&json!({})));
    }

    #[test]
    fn exact_match_is_found_for_equality_and_single_in() {
        assert_eq!(parse("app=web,x").requires_exact_match("app"), Some("web"));
        assert_eq!(parse("app in (web)").requires_exact_match("app"), Some("web"));
        assert_eq!(parse("app in (a,b)").requires_exact_match("app"), None);
        assert_eq!(parse("app!=web").requires_exact_match("app"), None);
    }

    #[test]
    fn selector_from_set_requires_every_label() {
        let s = LabelSelector::from_set([("b", "2"), ("a", "1")]).unwrap();
        assert_eq!(s.to_string(), "a=1,b=2");
        assert!(s.matches(&labels(&[("a", "1"), ("b", "2"), ("c", "3")])));
        assert!(LabelSelector::from_set([]).unwrap().is_empty());
    }
}
