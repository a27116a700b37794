//! Insured persons loaded by the region's agency while the node runs: an
//! admin signs a batch of person records (the records `xclear persons
//! import` reads from a file), and the node appends them as that command
//! does, one ledger entry per new or changed record.

use std::sync::Arc;

use super::records::{PersonRecord, QualificationRecord};
use super::Node;
use crate::api::envelope::PERSONS_DOMAIN;
use crate::api::NodeError;
use crate::proto::{ChronicQualificationRecord, InsuredPerson, PersonImport, PersonImportResult, Signed};
use crate::rules::SpecialGroup;

/// Most persons in one signed import.
pub const MAX_PERSONS_PER_IMPORT: usize = 1_000;

impl Node {
    /// Imports an admin's signed batch of insured persons.
    pub async fn import_persons_signed(self: &Arc<Self>, env: Signed) -> Result<PersonImportResult, NodeError> {
        let batch: PersonImport = self.open_as_admin(&env, PERSONS_DOMAIN)?;
        if batch.persons.len() > MAX_PERSONS_PER_IMPORT {
            return Err(NodeError::bad(
                "persons",
                format!("{} persons in one import (at most {MAX_PERSONS_PER_IMPORT})", batch.persons.len()),
            ));
        }
        let records = batch
            .persons
            .into_iter()
            .enumerate()
            .map(|(i, p)| person_record(p).map_err(|m| NodeError::bad(format!("persons[{i}].special_group"), m)))
            .collect::<Result<Vec<_>, _>>()?;
        let received = records.len() as u32;
        // To completion: a dropped call must not leave half a batch applied
        // to the ledger but not to the node's state.
        let node = Arc::clone(self);
        let added =
            super::run_to_completion("person import", async move { node.import_persons(&records).await }).await?;
        Ok(PersonImportResult { received, added: added as u32 })
    }
}

impl Node {
    /// Loads chunks of person records in order, as they arrive: each chunk
    /// is appended while the state applies the one before it. Returns the
    /// records loaded and those that changed something; on an error, that
    /// error and the records loaded before it (the state is brought up to
    /// them first).
    pub async fn load_persons(
        self: &Arc<Self>,
        chunks: &mut tokio::sync::mpsc::Receiver<Vec<PersonRecord>>,
        mut loaded: impl FnMut(u64),
    ) -> Result<(u64, u64), (NodeError, u64)> {
        let (mut read, mut added) = (0u64, 0u64);
        // What the chunk being applied leaves its persons with.
        let mut pending = std::collections::BTreeMap::new();
        let mut applying: Option<tokio::task::JoinHandle<Result<(), NodeError>>> = None;
        let applied = |h: Option<tokio::task::JoinHandle<Result<(), NodeError>>>| async move {
            match h {
                Some(h) => h.await.map_err(|e| NodeError::Internal(format!("applying persons: {e}")))?,
                None => Ok(()),
            }
        };
        while let Some(chunk) = chunks.recv().await {
            let appended = self.append_persons(&chunk, &pending).await;
            let before = applied(applying.take()).await;
            let n = match (appended, before) {
                (Ok((n, left)), Ok(())) => {
                    pending = left;
                    n
                }
                (Err(e), _) | (_, Err(e)) => {
                    let _ = self.apply_home();
                    return Err((e, read));
                }
            };
            let node = Arc::clone(self);
            applying = Some(tokio::task::spawn_blocking(move || node.maintain_state()));
            read += chunk.len() as u64;
            added += n as u64;
            loaded(read);
        }
        applied(applying).await.map_err(|e| (e, read))?;
        Ok((read, added))
    }
}

/// The wire form of a person as the record the node keeps.
pub fn person_record(p: InsuredPerson) -> Result<PersonRecord, String> {
    let special_group = match p.special_group.as_str() {
        "" => None,
        name => {
            Some(SpecialGroup::parse(name).ok_or_else(|| format!("{name:?} is not one of {}", SpecialGroup::names()))?)
        }
    };
    Ok(PersonRecord {
        psn_no: p.psn_no,
        insuplc_admdvs: p.insuplc_admdvs,
        insutype: p.insutype,
        retired: p.retired,
        special_group,
        contribution_years: p.contribution_years.into_iter().collect(),
        acct_balance: (!p.acct_balance.is_empty()).then_some(p.acct_balance),
        chronic: p.chronic.into_iter().map(qualification_record).collect(),
    })
}

/// A kept record in its wire form (for the command that sends a file).
pub fn insured_person(r: &PersonRecord) -> InsuredPerson {
    InsuredPerson {
        psn_no: r.psn_no.clone(),
        insuplc_admdvs: r.insuplc_admdvs.clone(),
        insutype: r.insutype.clone(),
        retired: r.retired,
        special_group: r.special_group.map(|g| g.as_str().to_string()).unwrap_or_default(),
        contribution_years: r.contribution_years.clone().into_iter().collect(),
        acct_balance: r.acct_balance.clone().unwrap_or_default(),
        chronic: r.chronic.iter().map(qualification_proto).collect(),
    }
}

pub fn qualification_record(q: ChronicQualificationRecord) -> QualificationRecord {
    QualificationRecord {
        dise_codg: q.dise_codg,
        begndate: q.begndate,
        enddate: (!q.enddate.is_empty()).then_some(q.enddate),
    }
}

pub fn qualification_proto(q: &QualificationRecord) -> ChronicQualificationRecord {
    ChronicQualificationRecord {
        dise_codg: q.dise_codg.clone(),
        begndate: q.begndate.clone(),
        enddate: q.enddate.clone().unwrap_or_default(),
    }
}
