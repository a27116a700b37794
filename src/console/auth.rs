//! Who may look: viewers named in the config, each with a token kept only as
//! its SHA-256; a token is sent as `Authorization: Bearer` or exchanged once
//! (`/login?token=`) for a session cookie. Sessions are bounded in number
//! and expire; their ids come from the caller (randomness is an argument).

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Most sessions held at once; the oldest goes first.
pub const MAX_SESSIONS: usize = 1_000;
/// How long a session lasts.
pub const SESSION_MS: i64 = 12 * 3_600_000;
/// The session cookie's name.
pub const COOKIE: &str = "xclear_console";

/// A viewer: a name and its token's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub name: String,
    pub token_sha256: [u8; 32],
}

impl Viewer {
    /// A viewer admitted by `token` (only its SHA-256 is kept).
    pub fn with_token(name: &str, token: &str) -> Viewer {
        Viewer { name: name.to_string(), token_sha256: Sha256::digest(token.as_bytes()).into() }
    }
}

/// The SHA-256 of a token, as a config holds it (hex).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The viewers a console admits, and their sessions.
#[derive(Debug, Default)]
pub struct Access {
    viewers: Vec<Viewer>,
    /// Session id -> (viewer, expires at ms).
    sessions: Mutex<HashMap<String, (String, i64)>>,
}

impl Access {
    pub fn new(viewers: Vec<Viewer>) -> Access {
        Access { viewers, sessions: Mutex::new(HashMap::new()) }
    }

    /// The viewer a token belongs to. Compared digest to digest, every
    /// viewer's, so the time taken says nothing of which came close.
    pub fn viewer_of_token(&self, token: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for v in &self.viewers {
            let same = v.token_sha256.iter().zip(digest.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
            if same {
                found = Some(v.name.as_str());
            }
        }
        found
    }

    /// Opens a session `id` for a viewer until `now_ms + SESSION_MS`.
    pub fn open_session(&self, id: String, viewer: &str, now_ms: i64) {
        if let Ok(mut s) = self.sessions.lock() {
            s.retain(|_, (_, until)| *until > now_ms);
            if s.len() >= MAX_SESSIONS {
                if let Some(oldest) = s.iter().min_by_key(|(_, (_, until))| *until).map(|(k, _)| k.clone()) {
                    s.remove(&oldest);
                }
            }
            s.insert(id, (viewer.to_string(), now_ms + SESSION_MS));
        }
    }

    /// The viewer of a live session.
    pub fn viewer_of_session(&self, id: &str, now_ms: i64) -> Option<String> {
        let s = self.sessions.lock().ok()?;
        s.get(id).filter(|(_, until)| *until > now_ms).map(|(v, _)| v.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_sessions() {
        let digest = |t: &str| -> [u8; 32] { Sha256::digest(t.as_bytes()).into() };
        let a = Access::new(vec![Viewer { name: "ops".into(), token_sha256: digest("secret") }]);
        assert_eq!(a.viewer_of_token("secret"), Some("ops"));
        assert_eq!(a.viewer_of_token("secreT"), None);
        assert_eq!(token_hash("secret"), hex::encode(digest("secret")));
        a.open_session("s1".into(), "ops", 1_000);
        assert_eq!(a.viewer_of_session("s1", 2_000).as_deref(), Some("ops"));
        assert_eq!(a.viewer_of_session("s1", 1_000 + SESSION_MS), None, "expired");
        assert_eq!(a.viewer_of_session("s2", 2_000), None);
        for i in 0..MAX_SESSIONS + 5 {
            a.open_session(format!("x{i}"), "ops", 3_000 + i as i64);
        }
        assert!(a.sessions.lock().map(|s| s.len()).unwrap_or(0) <= MAX_SESSIONS);
    }
}
