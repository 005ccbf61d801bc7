//! Publishing a commit so that a crash at any instant ends in the old or
//! the new commit: temporaries, the pending record (the commit point),
//! renames, the state file; and recovery when a dataset is opened.

use super::*;

/// Where a commit can be made to stop, to test recovery (see `fail_commit_at`).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitStep {
    /// New files written as temporaries, nothing recorded.
    FilesWritten,
    /// The pending record written (the commit point).
    PendingWritten,
    /// Half of the renames done.
    HalfRenamed,
    /// All renames done, no replaced file removed.
    Renamed,
    /// Replaced files removed, state not replaced.
    Removed,
    /// State replaced, pending record still there.
    StateWritten,
}

/// What a commit writes: temporaries to rename, files to remove.
pub(super) struct Plan {
    pub(super) commit: u64,
    pub(super) renames: Vec<(String, String)>,
    pub(super) removes: Vec<String>,
    /// Per table: (file id, entry) to add and ids to drop once published.
    pub(super) added: BTreeMap<String, Vec<(u32, LiveFile)>>,
    pub(super) dropped: BTreeMap<String, Vec<u32>>,
    pub(super) seq: u32,
    /// A Delta commit's random name part (unique among concurrent writers).
    pub(super) tag: String,
    /// Files a Delta commit put into the object store (paths in the schema).
    pub(super) written: Vec<String>,
}

impl Plan {
    /// An empty plan for commit number `commit` (`tag`: a Delta commit's
    /// random name part, empty for a plain dataset).
    pub(super) fn new(commit: u64, tag: String) -> Self {
        Plan {
            commit,
            renames: Vec::new(),
            removes: Vec::new(),
            added: BTreeMap::new(),
            dropped: BTreeMap::new(),
            seq: 0,
            tag,
            written: Vec::new(),
        }
    }

    /// Delete the temporaries of a commit that will not happen.
    fn discard(&self, root: &Path) {
        for (tmp, _) in &self.renames {
            let _ = fs::remove_file(root.join(tmp));
        }
    }
}

impl ParquetDestination {
    /// Finish a pending commit, load the manifest, delete leftovers.
    pub(super) fn recover(&mut self) -> Result<()> {
        let meta = self.root.join(META_DIR);
        let pending_path = meta.join(PENDING_FILE);
        if pending_path.exists() {
            let text = self.io(
                || format!("reading {}", pending_path.display()),
                fs::read_to_string(&pending_path),
            )?;
            let p: Pending = serde_json::from_str(&text)
                .map_err(|e| self.err(format!("reading {}", pending_path.display()), e))?;
            tracing::warn!(dataset = %self.origin(), commit = p.manifest.commit, "finishing a commit interrupted by a crash");
            self.finish_publish(&p)?;
        }
        let state_path = meta.join(STATE_FILE);
        if state_path.exists() {
            let text = self.io(
                || format!("reading {}", state_path.display()),
                fs::read_to_string(&state_path),
            )?;
            let m: Manifest = serde_json::from_str(&text)
                .map_err(|e| self.err(format!("{} is not valid", state_path.display()), e))?;
            if m.format != FORMAT_NAME || m.version > FORMAT_VERSION {
                return Err(self.err(
                    state_path.display(),
                    format!(
                        "format {} version {} is not one this etl understands ({FORMAT_NAME} up to {FORMAT_VERSION}); upgrade etl",
                        m.format, m.version
                    ),
                ));
            }
            self.manifest = m;
        }
        let origin = self.origin();
        self.tables.clear();
        for (name, tm) in &self.manifest.tables {
            self.tables
                .insert(name.clone(), Table::from_manifest(name, tm, &origin)?);
        }
        self.clean_leftovers()
    }

    /// Delete temporary files and parts no manifest lists (a commit that
    /// crashed before its commit point).
    pub(super) fn clean_leftovers(&self) -> Result<()> {
        let entries = self.io(|| "listing the dataset".into(), fs::read_dir(&self.root))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == META_DIR || !e.path().is_dir() {
                continue;
            }
            let live: BTreeSet<&str> = self
                .tables
                .get(&name)
                .map(|t| t.files.values().map(|f| f.path.as_str()).collect())
                .unwrap_or_default();
            self.clean_dir(&e.path(), "", &live, 0)?;
        }
        Ok(())
    }

    pub(super) fn clean_dir(
        &self,
        dir: &Path,
        rel: &str,
        live: &BTreeSet<&str>,
        depth: usize,
    ) -> Result<()> {
        let entries = self.io(|| format!("listing {}", dir.display()), fs::read_dir(dir))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let rel_path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if path.is_dir() {
                if depth == 0 {
                    self.clean_dir(&path, &rel_path, live, depth + 1)?;
                    // An emptied partition directory goes too.
                    if fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none()) {
                        let _ = fs::remove_dir(&path);
                    }
                }
                continue;
            }
            let ours_tmp = name.starts_with(".part-") && name.ends_with(".tmp");
            let stray_part = name.starts_with("part-")
                && name.ends_with(".parquet")
                && !live.contains(rel_path.as_str());
            if ours_tmp || stray_part {
                tracing::info!(file = %path.display(), "removing a leftover of an interrupted commit");
                self.io(
                    || format!("removing {}", path.display()),
                    fs::remove_file(&path),
                )?;
            }
        }
        Ok(())
    }

    /// Steps 3 and 4 of publishing; idempotent, so recovery can repeat them.
    pub(super) fn finish_publish(&mut self, p: &Pending) -> Result<()> {
        let mut dirs = BTreeSet::new();
        for (i, (tmp, fin)) in p.renames.iter().enumerate() {
            if self.fail_at == Some(CommitStep::HalfRenamed) && i == p.renames.len() / 2 {
                return self.simulated(CommitStep::HalfRenamed);
            }
            let (tmp, fin) = (self.root.join(tmp), self.root.join(fin));
            if tmp.exists() {
                self.io(
                    || format!("renaming {} into place", tmp.display()),
                    fs::rename(&tmp, &fin),
                )?;
            } else if !fin.exists() {
                return Err(self.err(
                    "finishing an interrupted commit",
                    format!("{} and its temporary file are both missing", fin.display()),
                ));
            }
            if let Some(d) = fin.parent() {
                dirs.insert(d.to_path_buf());
            }
        }
        for d in &dirs {
            sync_dir(d).map_err(|e| self.err(format!("syncing {}", d.display()), e))?;
        }
        self.check_step(CommitStep::Renamed)?;
        for r in &p.removes {
            let path = self.root.join(r);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.err(format!("removing {}", path.display()), e)),
            }
            // A partition directory left empty goes too.
            if let Some(d) = path.parent() {
                if fs::read_dir(d).is_ok_and(|mut e| e.next().is_none()) {
                    let _ = fs::remove_dir(d);
                }
            }
        }
        self.check_step(CommitStep::Removed)?;
        let meta = self.root.join(META_DIR);
        let text = serde_json::to_string_pretty(&p.manifest).expect("manifest serialises");
        write_atomic(&meta.join(STATE_FILE), text.as_bytes())
            .map_err(|e| self.err("saving state", e))?;
        self.check_step(CommitStep::StateWritten)?;
        self.io(
            || "removing the pending commit record".into(),
            fs::remove_file(meta.join(PENDING_FILE)),
        )?;
        sync_dir(&meta).map_err(|e| self.err("syncing the state directory", e))?;
        Ok(())
    }

    pub(super) fn check_step(&mut self, step: CommitStep) -> Result<()> {
        if self.fail_at == Some(step) {
            return self.simulated(step);
        }
        Ok(())
    }

    pub(super) fn simulated(&mut self, step: CommitStep) -> Result<()> {
        self.poisoned = true;
        Err(Error::Internal(format!("simulated crash at {step:?}")))
    }

    /// Give up a commit before its commit point: delete its temporaries and
    /// forget its operations. Key indexes already point at files that will
    /// not exist, so they are rebuilt when next needed.
    pub(super) fn abandon(&mut self, plan: &Plan) {
        plan.discard(&self.root);
        for t in self.tables.values_mut() {
            t.index = None;
        }
        let _ = self.rollback();
    }

    /// Write every table's pending operations and publish them with `state`
    /// (see the module doc for the protocol).
    pub(super) fn publish(&mut self, state: Option<(&str, &State)>) -> Result<WriteSummary> {
        if self.poisoned {
            return Err(self.err(
                "commit",
                "an earlier commit failed half-way; reopen the dataset to recover it",
            ));
        }
        let mut plan = Plan::new(self.manifest.commit + 1, String::new());
        let mut written = std::mem::take(&mut self.pending);
        for name in &self.dropping {
            if let Some(t) = self.tables.get(name) {
                plan.removes
                    .extend(t.files.values().map(|f| format!("{}/{}", t.name, f.path)));
            }
        }
        if let Err(e) = self.plan_tables(&mut plan, &mut written) {
            self.abandon(&plan);
            return Err(e);
        }
        let manifest = self.next_manifest(&plan, state);
        if self.fail_at == Some(CommitStep::FilesWritten) {
            self.simulated(CommitStep::FilesWritten)?;
        }
        let pending = Pending {
            manifest,
            renames: plan.renames.clone(),
            removes: plan.removes.clone(),
        };
        let meta = self.root.join(META_DIR);
        let r = write_atomic(
            &meta.join(PENDING_FILE),
            serde_json::to_string(&pending)
                .expect("pending serialises")
                .as_bytes(),
        );
        if let Err(e) = r {
            self.abandon(&plan);
            return Err(self.err("recording the commit", e));
        }
        self.check_step(CommitStep::PendingWritten)?;
        if let Err(e) = self.finish_publish(&pending) {
            self.poisoned = true;
            return Err(e);
        }
        self.published(&mut plan);
        self.manifest = pending.manifest;
        tracing::debug!(dataset = %self.origin(), commit = self.manifest.commit,
            files_written = plan.renames.len(), files_removed = plan.removes.len(), "committed");
        Ok(written)
    }

    /// Plan the commit of every table with pending operations.
    /// `_etl_seen` goes last: the others' plans say what it records.
    fn plan_tables(&mut self, plan: &mut Plan, written: &mut WriteSummary) -> Result<()> {
        let mut names: Vec<String> = self
            .tables
            .iter()
            .filter(|(n, _)| !self.dropping.contains(n) && n.as_str() != SEEN_TABLE)
            .filter(|(_, t)| t.has_pending())
            .map(|(n, _)| n.clone())
            .collect();
        for name in &names {
            let mut t = self.tables.remove(name).expect("listed");
            let r = self.commit_table(&mut t, plan);
            self.tables.insert(name.clone(), t);
            let c = r?;
            if c != TableCounts::default() {
                written.table(name).add(c);
            }
        }
        names.clear();
        if self.queue_seen()? && !self.dropping.iter().any(|n| n == SEEN_TABLE) {
            let mut t = self.tables.remove(SEEN_TABLE).expect("queued");
            let r = self.commit_table(&mut t, plan);
            self.tables.insert(SEEN_TABLE.to_string(), t);
            r?;
        }
        Ok(())
    }

    /// The manifest as it will be once the commit is published.
    fn next_manifest(&self, plan: &Plan, state: Option<(&str, &State)>) -> Manifest {
        let mut manifest = self.manifest.clone();
        manifest.commit = plan.commit;
        manifest.naming = self.naming.or(manifest.naming);
        if let Some((connector, state)) = state {
            let state_json: serde_json::Value =
                serde_json::from_str(&state.to_json()).expect("state is JSON");
            manifest.connectors.insert(connector.into(), state_json);
        }
        for name in &self.dropping {
            manifest.tables.remove(name);
        }
        for (name, t) in self
            .tables
            .iter()
            .filter(|(n, _)| !self.dropping.contains(n))
        {
            if t.columns.is_empty() {
                continue;
            }
            let mut files = t.files.clone();
            for id in plan.dropped.get(name).into_iter().flatten() {
                files.remove(id);
            }
            for (id, f) in plan.added.get(name).into_iter().flatten() {
                files.insert(*id, f.clone());
            }
            let mut m = t.manifest();
            m.files = files
                .values()
                .map(|f| FileEntry {
                    path: f.path.clone(),
                    rows: f.rows,
                })
                .collect();
            manifest.tables.insert(name.clone(), m);
        }
        manifest
    }

    /// Published: the in-memory view follows.
    fn published(&mut self, plan: &mut Plan) {
        for name in std::mem::take(&mut self.dropping) {
            self.tables.remove(&name);
        }
        for (name, t) in self.tables.iter_mut() {
            t.declared = false;
            for id in plan.dropped.get(name).into_iter().flatten() {
                t.files.remove(id);
            }
            for (id, f) in plan.added.remove(name).into_iter().flatten() {
                t.files.insert(id, f);
            }
        }
    }
}
