//! Errors found in rules files: always the file, the key and the reason.

use std::fmt;

/// One defect in one rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleIssue {
    pub file: String,
    pub key: String,
    pub reason: String,
}

impl fmt::Display for RuleIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.key, self.reason)
    }
}

/// Why a rules directory was refused: every defect found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RulesError {
    pub issues: Vec<RuleIssue>,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "rules refused ({} problem{}):", self.issues.len(), if self.issues.len() == 1 { "" } else { "s" })?;
        for issue in &self.issues {
            writeln!(f, "  {issue}")?;
        }
        Ok(())
    }
}

impl RulesError {
    pub fn single(file: impl Into<String>, key: impl Into<String>, reason: impl Into<String>) -> Self {
        RulesError { issues: vec![RuleIssue { file: file.into(), key: key.into(), reason: reason.into() }] }
    }
}

/// Collects the issues of one file while it is converted.
pub(crate) struct Checker<'a> {
    pub file: &'a str,
    pub issues: &'a mut Vec<RuleIssue>,
}

impl Checker<'_> {
    pub(crate) fn fail(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.issues.push(RuleIssue { file: self.file.to_string(), key: key.into(), reason: reason.into() });
    }
}
