//! User text in messages: clipped so a huge value cannot flood a log, and URLs with their
//! passwords hidden. A leaf: config, the store and the Node layer all quote user input.

/// Shortens user text quoted in a message, so a huge value cannot flood a log.
pub fn clip(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.escape_debug().to_string()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{}…", head.escape_debug())
    }
}

/// A URL with its password replaced by `***`.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparsable url>".to_string(),
    }
}

/// For a URL that would not parse: keep the scheme, hide everything after it.
pub fn redact_url_lossy(raw: &str) -> String {
    match raw.split_once("://") {
        Some((scheme, _)) => format!("{}://…", clip(scheme)),
        None => "<not a url>".into(),
    }
}
