//! Recognising an obvious placeholder from example documentation (`your_key`, `changeme`, `<token>`).

/// Whether a value is an obvious placeholder from example documentation.
pub fn is_placeholder(value: &str) -> bool {
    let lower = value.trim().to_lowercase();
    if lower.is_empty() {
        return true;
    }
    const WHOLE: [&str; 8] = [
        "todo",
        "tbd",
        "fixme",
        "placeholder",
        "secret",
        "password",
        "none",
        "null",
    ];
    if WHOLE.contains(&lower.as_str()) {
        return true;
    }
    const INSIDE: [&str; 6] = [
        "changeme",
        "change_me",
        "change-me",
        "replace_me",
        "replaceme",
        "replace-me",
    ];
    if INSIDE.iter().any(|w| lower.contains(w)) {
        return true;
    }
    // `your_key`, `your-api-key`, `postgres://user:your_password@…`: "your" starting a word.
    let bytes = lower.as_bytes();
    for (i, _) in lower.match_indices("your") {
        let starts_word = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let joined = matches!(bytes.get(i + 4), Some(b'_' | b'-'));
        if starts_word && joined {
            return true;
        }
    }
    // `xxx`, `sk-xxxxxxxxxxxxxxxx`, `ACxxxxxxxx…`: all x's, or a long run of them.
    if lower.len() >= 3 && lower.chars().all(|c| c == 'x') {
        return true;
    }
    if lower.contains("xxxxxxxx") {
        return true;
    }
    // `sk-...`, `whsec_…`, `AC...`: an example with the real part left out.
    if lower.ends_with("...") || lower.ends_with('…') {
        return true;
    }
    // `<your key>`, `<...>`, `postgres://<user>:<password>@<host>/db`.
    let mut rest = lower.as_str();
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        if let Some(close) = rest.find('>') {
            let inside = &rest[..close];
            if !inside.is_empty()
                && inside.trim() == inside
                && inside
                    .chars()
                    .all(|c| c.is_alphanumeric() || " _-.".contains(c))
            {
                return true;
            }
        }
    }
    false
}
