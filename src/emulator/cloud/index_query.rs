//! The fleet-indexing query language, the subset the emulator serves: `thingName:<v>`,
//! `attributes.<key>:<v>`, `shadow.reported.<path>:<v>` and `thingGroupNames:<group>` terms,
//! where a value may hold `*` wildcards and may be "quoted"; `AND`, `OR`, `NOT` (any case),
//! terms side by side meaning AND, and parentheses. `NOT` binds tightest, then `AND`, then
//! `OR`. Anything else (ranges, other fields) is an InvalidQueryException naming the spot.
//!
//! Owns: parsing to a [`Query`] and deciding whether one thing matches ([`Query::matches`]).
//! The parser is a small hand-written recursive descent: the grammar is a dozen lines, and a
//! parser generator would add a build step and worse error messages for it. Must not know:
//! how things are stored or indexed ([`super::fleet_index`] evaluates queries over its
//! indexes).

use std::fmt;

/// A field a term looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    ThingName,
    Attribute(String),
    /// `shadow.reported.<path>`, the path dot-joined.
    Reported(String),
    ThingGroupNames,
}

/// A term's value: exact, or with `*` wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    Wildcard(String),
}

impl Pattern {
    fn of(value: String) -> Self {
        if value.contains('*') {
            Self::Wildcard(value)
        } else {
            Self::Exact(value)
        }
    }

    /// Whether `s` matches (`*` stands for any run of characters).
    pub fn matches(&self, s: &str) -> bool {
        match self {
            Self::Exact(v) => v == s,
            Self::Wildcard(p) => glob(p, s),
        }
    }

    /// The fixed text before the first `*` (the whole value when exact).
    pub fn prefix(&self) -> &str {
        match self {
            Self::Exact(v) => v,
            Self::Wildcard(p) => p.split('*').next().unwrap_or(""),
        }
    }
}

fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = match parts.split_first() {
        Some(x) => x,
        None => return s.is_empty(),
    };
    let Some(mut tail) = s.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return tail.is_empty();
    };
    for part in middle {
        match tail.find(part) {
            Some(i) => tail = &tail[i + part.len()..],
            None => return false,
        }
    }
    tail.ends_with(last)
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Term(Field, Pattern),
    And(Box<Query>, Box<Query>),
    Or(Box<Query>, Box<Query>),
    Not(Box<Query>),
}

/// What a query sees of one thing.
pub trait ThingView {
    fn name(&self) -> &str;
    fn attribute(&self, key: &str) -> Option<&str>;
    /// The reported values at `path` (several for an array); none when shadows are not
    /// indexed.
    fn reported(&self, path: &str) -> Vec<&str>;
    fn groups(&self) -> Vec<&str>;
}

/// Why a query was refused (InvalidQueryException).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError(pub String);

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Word(String),
    Quoted(String),
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, QueryError> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push((at, Token::Open));
                i += 1;
            }
            ')' => {
                out.push((at, Token::Close));
                i += 1;
            }
            _ => {
                let mut word = String::new();
                while i < chars.len() {
                    let c = chars[i].1;
                    if c.is_whitespace() || c == '(' || c == ')' {
                        break;
                    }
                    if c == '"' {
                        // A quoted value after `field:`.
                        let start = chars[i].0;
                        i += 1;
                        let mut quoted = String::new();
                        loop {
                            match chars.get(i) {
                                None => {
                                    return Err(QueryError(format!(
                                        "unterminated quote at {start}"
                                    )))
                                }
                                Some((_, '"')) => {
                                    i += 1;
                                    break;
                                }
                                Some((_, c)) => {
                                    quoted.push(*c);
                                    i += 1;
                                }
                            }
                        }
                        word.push('\u{0}');
                        word.push_str(&quoted);
                        continue;
                    }
                    word.push(c);
                    i += 1;
                }
                match word.split_once('\u{0}') {
                    Some((field, value)) => {
                        out.push((at, Token::Quoted(format!("{field}\u{0}{value}"))))
                    }
                    None => out.push((at, Token::Word(word))),
                }
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
}

fn keyword(t: &Token, k: &str) -> bool {
    matches!(t, Token::Word(w) if w.eq_ignore_ascii_case(k))
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.tokens.get(self.pos).map_or(usize::MAX, |(a, _)| *a)
    }

    fn or(&mut self) -> Result<Query, QueryError> {
        let mut left = self.and()?;
        while self.peek().is_some_and(|t| keyword(t, "OR")) {
            self.pos += 1;
            let right = self.and()?;
            left = Query::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Query, QueryError> {
        let mut left = self.unary()?;
        loop {
            match self.peek() {
                Some(t) if keyword(t, "AND") => self.pos += 1,
                Some(t) if keyword(t, "OR") || *t == Token::Close => break,
                Some(_) => {}
                None => break,
            }
            let right = self.unary()?;
            left = Query::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Query, QueryError> {
        let at = self.at();
        match self.tokens.get(self.pos).map(|(_, t)| t.clone()) {
            None => Err(QueryError(
                "the query ends where a term was expected".into(),
            )),
            Some(t) if keyword(&t, "NOT") => {
                self.pos += 1;
                Ok(Query::Not(Box::new(self.unary()?)))
            }
            Some(Token::Open) => {
                self.pos += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return Err(QueryError(format!(
                        "the parenthesis opened at {at} is not closed"
                    )));
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Token::Close) => Err(QueryError(format!("unexpected ')' at {at}"))),
            Some(t) if keyword(&t, "AND") || keyword(&t, "OR") => Err(QueryError(format!(
                "an operator at {at} where a term was expected"
            ))),
            Some(Token::Word(w)) => {
                self.pos += 1;
                term(&w, at)
            }
            Some(Token::Quoted(q)) => {
                self.pos += 1;
                let (field, value) = q.split_once('\u{0}').unwrap_or((q.as_str(), ""));
                let Some(field) = field.strip_suffix(':') else {
                    return Err(QueryError(format!(
                        "a quoted value at {at} must follow field:"
                    )));
                };
                Ok(Query::Term(
                    parse_field(field, at)?,
                    Pattern::Exact(value.to_owned()),
                ))
            }
        }
    }
}

fn parse_field(field: &str, at: usize) -> Result<Field, QueryError> {
    let nonempty = |k: &str| -> Result<String, QueryError> {
        if k.is_empty() {
            Err(QueryError(format!("an empty key in {field:?} at {at}")))
        } else {
            Ok(k.to_owned())
        }
    };
    if field == "thingName" {
        Ok(Field::ThingName)
    } else if field == "thingGroupNames" {
        Ok(Field::ThingGroupNames)
    } else if let Some(k) = field.strip_prefix("attributes.") {
        Ok(Field::Attribute(nonempty(k)?))
    } else if let Some(k) = field.strip_prefix("shadow.reported.") {
        Ok(Field::Reported(nonempty(k)?))
    } else {
        Err(QueryError(format!(
            "field {field:?} at {at} is not supported (thingName, attributes.*, shadow.reported.*, thingGroupNames)"
        )))
    }
}

fn term(word: &str, at: usize) -> Result<Query, QueryError> {
    let Some((field, value)) = word.split_once(':') else {
        return Err(QueryError(format!(
            "{word:?} at {at} is not a field:value term"
        )));
    };
    if value.is_empty() {
        return Err(QueryError(format!("{field}: at {at} has no value")));
    }
    if value.starts_with(['<', '>', '[', '{']) {
        return Err(QueryError(format!(
            "range values ({word:?} at {at}) are not supported"
        )));
    }
    Ok(Query::Term(
        parse_field(field, at)?,
        Pattern::of(value.to_owned()),
    ))
}

impl Query {
    /// Parses `text`; an empty query or trailing input is an error.
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        let tokens = tokenize(text)?;
        if tokens.is_empty() {
            return Err(QueryError("the query is empty".into()));
        }
        let mut p = Parser { tokens, pos: 0 };
        let q = p.or()?;
        if p.pos < p.tokens.len() {
            return Err(QueryError(format!("unexpected input at {}", p.at())));
        }
        Ok(q)
    }

    /// Whether `thing` matches.
    pub fn matches(&self, thing: &dyn ThingView) -> bool {
        match self {
            Self::Term(field, pattern) => match field {
                Field::ThingName => pattern.matches(thing.name()),
                Field::Attribute(k) => thing.attribute(k).is_some_and(|v| pattern.matches(v)),
                Field::Reported(path) => thing.reported(path).iter().any(|v| pattern.matches(v)),
                Field::ThingGroupNames => thing.groups().iter().any(|g| pattern.matches(g)),
            },
            Self::And(a, b) => a.matches(thing) && b.matches(thing),
            Self::Or(a, b) => a.matches(thing) || b.matches(thing),
            Self::Not(q) => !q.matches(thing),
        }
    }

    /// Whether the query reads shadows.
    pub fn reads_shadow(&self) -> bool {
        match self {
            Self::Term(Field::Reported(_), _) => true,
            Self::Term(..) => false,
            Self::And(a, b) | Self::Or(a, b) => a.reads_shadow() || b.reads_shadow(),
            Self::Not(q) => q.reads_shadow(),
        }
    }

    /// Whether the query names the group `g` (so a change to `g`'s members matters).
    pub fn reads_groups(&self) -> bool {
        match self {
            Self::Term(Field::ThingGroupNames, _) => true,
            Self::Term(..) => false,
            Self::And(a, b) | Self::Or(a, b) => a.reads_groups() || b.reads_groups(),
            Self::Not(q) => q.reads_groups(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T {
        name: &'static str,
        attrs: Vec<(&'static str, &'static str)>,
        reported: Vec<(&'static str, &'static str)>,
        groups: Vec<&'static str>,
    }

    impl ThingView for T {
        fn name(&self) -> &str {
            self.name
        }
        fn attribute(&self, key: &str) -> Option<&str> {
            self.attrs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
        }
        fn reported(&self, path: &str) -> Vec<&str> {
            self.reported
                .iter()
                .filter(|(k, _)| *k == path)
                .map(|(_, v)| *v)
                .collect()
        }
        fn groups(&self) -> Vec<&str> {
            self.groups.clone()
        }
    }

    fn thing() -> T {
        T {
            name: "core-017",
            attrs: vec![("site", "north"), ("model", "gw 2")],
            reported: vec![("fw.version", "1.4.2"), ("stamp", "job-7")],
            groups: vec!["lab"],
        }
    }

    fn m(q: &str) -> bool {
        Query::parse(q)
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .matches(&thing())
    }

    #[test]
    fn terms_wildcards_and_operators() {
        assert!(m("thingName:core-017"));
        assert!(m("thingName:core-*"));
        assert!(m("thingName:*-0*7"));
        assert!(!m("thingName:core-1*"));
        assert!(m("attributes.site:north AND thingGroupNames:lab"));
        assert!(m("attributes.model:\"gw 2\""));
        assert!(m("shadow.reported.fw.version:1.4.*"));
        assert!(!m("attributes.site:north AND NOT thingGroupNames:lab"));
        assert!(m(
            "(thingName:x OR attributes.site:north) AND NOT thingGroupNames:exclude"
        ));
        assert!(m("attributes.site:south OR shadow.reported.stamp:job-7"));
        assert!(
            m("attributes.site:north thingName:core*"),
            "side by side is AND"
        );
        assert!(
            m("not attributes.site:south and thingName:core*"),
            "keywords in any case"
        );
        assert!(!m("NOT (attributes.site:north OR thingName:x)"));
    }

    #[test]
    fn bad_queries_say_what_and_where() {
        for (q, says) in [
            ("", "empty"),
            ("thingName", "field:value"),
            ("(thingName:a", "not closed"),
            ("thingName:a)", "unexpected"),
            ("AND thingName:a", "operator"),
            ("thingName:a AND", "ends"),
            ("color:red", "not supported"),
            ("attributes.:x", "empty key"),
            ("attributes.n:[1 TO 5]", "range"),
            ("attributes.m:\"gw", "unterminated"),
        ] {
            let e = Query::parse(q).unwrap_err();
            assert!(e.0.contains(says), "{q:?}: {e}");
        }
    }
}
