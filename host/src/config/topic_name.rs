//! Kafka's rule for topic names, in one place: the pipeline file's topics are checked with it, and
//! so are the topics plugins choose at run time, so that a name Kafka would refuse is reported as
//! such instead of failing (and being retried) as a produce error.

/// Longest name Kafka accepts (its `Topic.MAX_NAME_LENGTH`).
pub const MAX_TOPIC_NAME_LENGTH: usize = 249;

/// How many distinct illegal characters a message lists before it stops.
const SHOWN_ILLEGAL: usize = 5;

/// What is wrong with `name` as a Kafka topic name, or `None` if Kafka accepts it.
///
/// Kafka's rule: 1 to 249 characters, each an ASCII letter or digit, `.`, `_` or `-`, and neither
/// `.` nor `..`. The text reads after the quoted name and says what is allowed, e.g.
/// `"bad out!"` + ` contains ' ' and '!', but a Kafka topic name may only contain ASCII letters,
/// digits, '.', '_' and '-'`.
pub fn topic_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty, but a Kafka topic name has at least one character".to_owned());
    }
    if name == "." || name == ".." {
        return Some(format!(
            "is {name:?}, which Kafka does not allow as a topic name"
        ));
    }
    let mut wrong = Vec::new();
    let mut rules = Vec::new();
    let length = name.chars().count();
    if length > MAX_TOPIC_NAME_LENGTH {
        wrong.push(format!("is {length} characters long"));
        rules.push(format!("has at most {MAX_TOPIC_NAME_LENGTH} characters"));
    }
    let illegal = illegal_characters(name);
    if !illegal.is_empty() {
        wrong.push(format!("contains {illegal}"));
        rules.push("may only contain ASCII letters, digits, '.', '_' and '-'".to_owned());
    }
    if wrong.is_empty() {
        return None;
    }
    Some(format!(
        "{}, but a Kafka topic name {}",
        wrong.join(" and "),
        rules.join(" and ")
    ))
}

fn is_legal(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// The distinct illegal characters of `name` in order of appearance, quoted and escaped (a tab
/// shows as `'\t'`), as `'a', 'b' and 'c'`; empty when there are none.
fn illegal_characters(name: &str) -> String {
    let mut found: Vec<char> = Vec::new();
    for c in name.chars().filter(|&c| !is_legal(c)) {
        if !found.contains(&c) {
            found.push(c);
        }
    }
    let more = found.len() > SHOWN_ILLEGAL;
    let quoted: Vec<String> = found
        .iter()
        .take(SHOWN_ILLEGAL)
        .map(|c| format!("'{}'", c.escape_debug()))
        .collect();
    match (quoted.as_slice(), more) {
        ([], _) => String::new(),
        (shown, true) => format!("{} and more", shown.join(", ")),
        ([one], false) => one.clone(),
        ([first @ .., last], false) => format!("{} and {last}", first.join(", ")),
    }
}
