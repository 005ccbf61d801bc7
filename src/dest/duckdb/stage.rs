//! Upserts staged in memory and appended to a staging table, then merged
//! into their table with one MERGE per flush.

use super::*;

/// Upserts waiting to be merged: small batches buffered in memory, then
/// appended to a staging table in large chunks.
pub(super) struct Staged {
    pub(super) stage: String,
    pub(super) schema: Arc<Schema>,
    /// Rows already appended to the staging table (0: not created yet).
    pub(super) rows: u64,
    pub(super) buffer: Vec<RecordBatch>,
}

impl Staged {
    pub(super) fn buffered(&self) -> usize {
        self.buffer.iter().map(RecordBatch::num_rows).sum()
    }
}

impl DuckDbDestination {
    /// Create a temporary table shaped like `schema` and append `batch` to it.
    pub(super) fn stage(
        &mut self,
        stage: &str,
        schema: &Schema,
        batch: RecordBatch,
        create: bool,
    ) -> Result<()> {
        if create {
            let cols: Vec<String> = schema
                .fields()
                .iter()
                .map(|f| {
                    let ty = duckdb_type_of(f.data_type()).unwrap_or_else(|| "VARCHAR".into());
                    format!("{} {ty}", ident(f.name()))
                })
                .collect();
            self.exec(&format!(
                "CREATE OR REPLACE TEMP TABLE {} ({})",
                ident(stage),
                cols.join(", ")
            ))?;
        }
        let mut app = self
            .conn
            .appender_to_catalog_and_db(stage, "temp", "main")
            .map_err(|e| self.err(format!("staging {stage}"), e))?;
        app.append_record_batch(batch)
            .map_err(|e| self.err(format!("staging {stage}"), e))?;
        app.flush()
            .map_err(|e| self.err(format!("staging {stage}"), e))?;
        Ok(())
    }

    /// Merge the staged upserts of one table into it.
    /// Append the buffered batches of a table to its staging table.
    pub(super) fn append_buffered(&mut self, table: &str) -> Result<()> {
        let Some(st) = self.staged.get_mut(table) else {
            return Ok(());
        };
        if st.buffer.is_empty() {
            return Ok(());
        }
        let batches = std::mem::take(&mut st.buffer);
        let (stage, schema, create) = (st.stage.clone(), st.schema.clone(), st.rows == 0);
        st.rows += batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        let batch = arrow::compute::concat_batches(&schema, &batches)
            .map_err(|e| self.err(format!("staging {stage}"), e))?;
        self.stage(&stage, &schema, batch, create)
    }

    pub(super) fn flush_upserts(&mut self, table: &str) -> Result<()> {
        self.append_buffered(table)?;
        let Some(staged) = self.staged.remove(table) else {
            return Ok(());
        };
        if staged.rows == 0 {
            return Ok(());
        }
        let t = self
            .schemas
            .get(table)
            .cloned()
            .expect("staged tables were declared");
        let cols: Vec<String> = staged
            .schema
            .fields()
            .iter()
            .map(|f| ident(f.name()))
            .collect();
        let target = self.qualified(table);
        let stage = ident(&staged.stage);
        if t.primary_key.is_empty() {
            let n = self.exec(&format!(
                "INSERT INTO {target} ({}) SELECT {} FROM {stage}",
                cols.join(", "),
                cols.join(", ")
            ))?;
            self.pending.table(table).inserted += n as u64;
            self.exec(&format!("DROP TABLE {stage}"))?;
            return Ok(());
        }
        let pk: Vec<String> = t.primary_key.iter().map(|k| ident(k)).collect();
        let on = pk
            .iter()
            .map(|k| format!("t.{k} = s.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let distinct = self.count(&format!(
            "SELECT count(*) FROM (SELECT DISTINCT {} FROM {stage})",
            pk.join(", ")
        ))?;
        let source = if distinct == staged.rows {
            stage.clone()
        } else {
            format!(
                "(SELECT {} FROM {stage} QUALIFY row_number() OVER (PARTITION BY {} ORDER BY rowid DESC) = 1) s",
                cols.join(", "),
                pk.join(", ")
            )
        };
        // An upsert replaces the whole row: delete the staged keys (keys are
        // unique in the target, so the deleted count is the updated count),
        // then insert the staged rows. (MERGE … WHEN MATCHED THEN UPDATE hit a
        // cliff in DuckDB: updating the second half of a 200k-row table built by
        // earlier merges took 15 s against 0.2 s for delete + insert.)
        let matched = self.exec(&format!(
            "DELETE FROM {target} t USING {stage} s WHERE {on}"
        ))? as u64;
        self.exec(&format!(
            "INSERT INTO {target} ({}, {}) SELECT {}, false FROM {source}",
            cols.join(", "),
            ident(t.deleted_column),
            cols.join(", ")
        ))
        .map_err(|e| self.err(format!("merging into table {table}"), e))?;
        let c = self.pending.table(table);
        c.updated += matched;
        c.inserted += distinct - matched;
        self.exec(&format!("DROP TABLE {stage}"))?;
        tracing::debug!(
            table,
            rows = staged.rows,
            inserted = distinct - matched,
            updated = matched,
            "merged staged rows"
        );
        Ok(())
    }

    pub(super) fn flush_all(&mut self) -> Result<()> {
        let tables: Vec<String> = self.staged.keys().cloned().collect();
        for t in tables {
            self.flush_upserts(&t)?;
        }
        Ok(())
    }
}
