//! The rules every node applies: benefit policies (home side), catalogues
//! (treatment side) and corps–local pairs, loaded from `clearing_rules/`.
//!
//! Layout of a rules directory:
//! - `policies/*.toml`: one benefit policy (region, insurance type, effective date) per file;
//! - `catalogues/*.toml`: one catalogue per file, plus the national base catalogue;
//! - `corps_local.toml`: the corps–local pairs (optional).

pub mod catalogue;
mod error;
pub mod policy;
pub mod toml_format;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;

pub use catalogue::{Catalogue, CatalogueItem, CatalogueScope, ItemClass};
pub use error::{RuleIssue, RulesError};
pub use policy::{BenefitPolicy, CiFund, Insutype, Reduction, SpecialGroup};

use crate::region::{CorpsLocalPairs, RegionCode};
use error::Checker;
use toml_format::{CatalogueFile, PairsFile, PolicyFile};

/// Largest rules file read (a catalogue of tens of thousands of items fits).
pub const MAX_RULES_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Most files read from one rules subdirectory.
pub const MAX_RULES_FILES: usize = 10_000;

/// Why no policy applies to a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyLookupError {
    #[error("no benefit policy for region {region} insurance type {insutype}")]
    UnknownRegion { region: RegionCode, insutype: &'static str },
    #[error("no benefit policy of region {region} is in force on {date}")]
    NotInForce { region: RegionCode, date: NaiveDate },
}

/// All the rules, validated, indexed for lookup.
#[derive(Debug, Clone, Default)]
pub struct RuleBook {
    /// Versions sorted by effective date.
    policies: BTreeMap<(RegionCode, Insutype), Vec<BenefitPolicy>>,
    catalogues: BTreeMap<CatalogueScope, Vec<Catalogue>>,
    pairs: CorpsLocalPairs,
}

impl RuleBook {
    /// Loads and validates a rules directory; refuses it with every defect found.
    pub fn load(dir: &Path) -> Result<RuleBook, RulesError> {
        let mut issues = Vec::new();
        let policies = read_toml_files(&dir.join("policies"), &mut issues);
        let catalogues = read_toml_files(&dir.join("catalogues"), &mut issues);
        let pairs_path = dir.join("corps_local.toml");
        let mut pairs = None;
        if pairs_path.exists() {
            let file = pairs_path.display().to_string();
            pairs = read_bounded(&pairs_path, &file, &mut issues).map(|text| (file, text));
        }
        RuleBook::parse_files(&policies, &catalogues, pairs.as_ref(), issues)
    }

    /// Validates rules from their texts, `(file name, TOML text)` each;
    /// `issues` already found (unreadable files) are reported with the rest.
    pub fn parse_files(
        policy_files: &[(String, String)],
        catalogue_files: &[(String, String)],
        pairs_file: Option<&(String, String)>,
        mut issues: Vec<RuleIssue>,
    ) -> Result<RuleBook, RulesError> {
        let mut policies = Vec::new();
        let mut catalogues = Vec::new();
        for (file, text) in policy_files {
            let mut c = Checker { file, issues: &mut issues };
            if let Some(p) = parse::<PolicyFile>(&mut c, text).and_then(|f| f.into_policy(&mut c)) {
                policies.push(p);
            }
        }
        for (file, text) in catalogue_files {
            let mut c = Checker { file, issues: &mut issues };
            if let Some(cat) = parse::<CatalogueFile>(&mut c, text).and_then(|f| f.into_catalogue(&mut c)) {
                catalogues.push(cat);
            }
        }
        let mut pairs = Vec::new();
        if let Some((file, text)) = pairs_file {
            let mut c = Checker { file, issues: &mut issues };
            pairs = parse::<PairsFile>(&mut c, text).and_then(|f| f.into_pairs(&mut c)).unwrap_or_default();
        }
        let book = RuleBook::from_parts(policies, catalogues, CorpsLocalPairs::new(pairs), &mut issues);
        if issues.is_empty() {
            Ok(book)
        } else {
            Err(RulesError { issues })
        }
    }

    /// Builds the indexes; two versions with the same effective date are a defect.
    pub fn from_parts(
        policies: Vec<BenefitPolicy>,
        catalogues: Vec<Catalogue>,
        pairs: CorpsLocalPairs,
        issues: &mut Vec<RuleIssue>,
    ) -> RuleBook {
        let mut book = RuleBook { pairs, ..RuleBook::default() };
        for p in policies {
            let versions = book.policies.entry((p.region, p.insutype)).or_default();
            if let Some(twin) = versions.iter().find(|v| v.effective == p.effective) {
                issues.push(RuleIssue {
                    file: p.source.clone(),
                    key: "effective".into(),
                    reason: format!(
                        "region {} insurance type {} already has a policy effective {} in {}",
                        p.region,
                        p.insutype.code(),
                        p.effective,
                        twin.source
                    ),
                });
                continue;
            }
            versions.push(p);
            versions.sort_by_key(|v| v.effective);
        }
        for cat in catalogues {
            let versions = book.catalogues.entry(cat.scope).or_default();
            if let Some(twin) = versions.iter().find(|v| v.effective == cat.effective) {
                issues.push(RuleIssue {
                    file: cat.source.clone(),
                    key: "effective".into(),
                    reason: format!(
                        "this catalogue already has a version effective {} in {}",
                        cat.effective, twin.source
                    ),
                });
                continue;
            }
            versions.push(cat);
            versions.sort_by_key(|v| v.effective);
        }
        book
    }

    pub fn pairs(&self) -> &CorpsLocalPairs {
        &self.pairs
    }

    /// The policy version in force on `date` for a person insured in `home`:
    /// the most specific region of the home code's lineage that has a policy
    /// for the insurance type, and its latest version effective on or before `date`.
    pub fn policy_for(
        &self,
        home: RegionCode,
        insutype: Insutype,
        date: NaiveDate,
    ) -> Result<&BenefitPolicy, PolicyLookupError> {
        let versions = home
            .lineage()
            .find_map(|r| self.policies.get(&(r, insutype)))
            .ok_or(PolicyLookupError::UnknownRegion { region: home, insutype: insutype.code() })?;
        versions.iter().rev().find(|v| v.effective <= date).ok_or(PolicyLookupError::NotInForce { region: home, date })
    }

    /// The catalogue in force on `date` in `treatment`: the most specific
    /// covering region's, else the national base catalogue.
    pub fn catalogue_for(&self, treatment: RegionCode, date: NaiveDate) -> Option<&Catalogue> {
        let in_force = |scope: CatalogueScope| {
            self.catalogues.get(&scope).and_then(|vs| vs.iter().rev().find(|v| v.effective <= date))
        };
        treatment
            .lineage()
            .find_map(|r| in_force(CatalogueScope::Region(r)))
            .or_else(|| in_force(CatalogueScope::National))
    }

    /// Every policy version, for listing.
    pub fn policies(&self) -> impl Iterator<Item = &BenefitPolicy> {
        self.policies.values().flatten()
    }
}

fn parse<T: serde::de::DeserializeOwned>(c: &mut Checker, text: &str) -> Option<T> {
    let de = match toml::Deserializer::parse(text) {
        Ok(de) => de,
        Err(e) => {
            c.fail("-", toml_syntax(text, &e));
            return None;
        }
    };
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Some(v),
        Err(e) => {
            let path = e.path().to_string();
            c.fail(if path == "." { "-".to_string() } else { path }, e.inner().message().to_string());
            None
        }
    }
}

fn read_bounded(path: &Path, file: &str, issues: &mut Vec<RuleIssue>) -> Option<String> {
    let fail = |issues: &mut Vec<RuleIssue>, reason: String| {
        issues.push(RuleIssue { file: file.to_string(), key: "-".into(), reason });
        None
    };
    match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_RULES_FILE_BYTES => {
            return fail(issues, format!("file is {} bytes, over the limit of {MAX_RULES_FILE_BYTES}", m.len()))
        }
        Err(e) => return fail(issues, format!("cannot read: {e}")),
        _ => {}
    }
    match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) => fail(issues, format!("cannot read: {e}")),
    }
}

/// `(display name, text)` of every `*.toml` in `dir`, sorted by name.
fn read_toml_files(dir: &Path, issues: &mut Vec<RuleIssue>) -> Vec<(String, String)> {
    let name = dir.display().to_string();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            issues.push(RuleIssue { file: name, key: "-".into(), reason: format!("cannot read directory: {e}") });
            return Vec::new();
        }
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    if paths.len() > MAX_RULES_FILES {
        issues.push(RuleIssue { file: name, key: "-".into(), reason: format!("more than {MAX_RULES_FILES} files") });
        return Vec::new();
    }
    paths
        .iter()
        .filter_map(|p| {
            let file = p.display().to_string();
            read_bounded(p, &file, issues).map(|t| (file, t))
        })
        .collect()
}

/// A TOML syntax error as a reader wants it: the line and column where the
/// parser stopped, and what it expected.
pub fn toml_syntax(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("not valid TOML at line {line}, column {column}: {}", e.message())
        }
        None => format!("not valid TOML: {}", e.message()),
    }
}

#[cfg(test)]
mod toml_syntax_tests {
    #[test]
    fn a_toml_syntax_error_names_its_line() {
        let text = "region = \"611000\"\nlisten = \"127.0.0.1:1\"\nkey_file = = \"x\"\n";
        let e = toml::Deserializer::parse(text).err().expect("a syntax error");
        let m = super::toml_syntax(text, &e);
        assert!(m.starts_with("not valid TOML at line 3, column"), "{m}");
    }
}
