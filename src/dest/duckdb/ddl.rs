//! Tables as their schemas declare them: created, and evolved (columns
//! added, types widened) as batches bring more.

use super::*;

impl DuckDbDestination {
    /// Create the table or add the columns it lacks.
    pub(super) fn ensure_table(&mut self, t: &TableSchema) -> Result<()> {
        // A declaration that changed (an inferred column widened) is checked
        // against the table again, after what is staged under the old one.
        if self
            .schemas
            .get(&t.name)
            .is_some_and(|old| old.columns != t.columns)
        {
            self.flush_upserts(&t.name)?;
            self.columns.remove(&t.name);
            self.schemas.insert(t.name.clone(), t.clone());
        }
        self.schemas
            .entry(t.name.clone())
            .or_insert_with(|| t.clone());
        if self.columns.contains_key(&t.name) {
            return Ok(());
        }
        self.begin()?;
        let existing = self.existing_columns(&t.name)?;
        if existing.is_empty() {
            self.create_table(t)?;
        } else {
            self.evolve_table(t, &existing)?;
        }
        let mut known: HashSet<String> = t.columns.iter().map(|c| c.name.clone()).collect();
        known.extend(existing.into_keys());
        known.insert(t.deleted_column.into());
        self.columns.insert(t.name.clone(), known);
        Ok(())
    }

    fn create_table(&mut self, t: &TableSchema) -> Result<()> {
        let mut cols: Vec<String> = t
            .columns
            .iter()
            .map(|c| {
                let nn = if t.is_primary_key(&c.name) {
                    " NOT NULL"
                } else {
                    ""
                };
                format!("{} {}{nn}", ident(&c.name), c.ty.duckdb_type())
            })
            .collect();
        cols.insert(
            t.deleted_position(),
            format!("{} BOOLEAN NOT NULL DEFAULT false", ident(t.deleted_column)),
        );
        self.exec(&format!(
            "CREATE TABLE {} ({})",
            self.qualified(&t.name),
            cols.join(", ")
        ))?;
        tracing::info!(table = %t.name, columns = t.columns.len(), "created table");
        Ok(())
    }

    /// Add the columns `t` declares that the table lacks, and widen the ones
    /// declared wider; a type the table cannot change to is refused.
    fn evolve_table(&mut self, t: &TableSchema, existing: &HashMap<String, String>) -> Result<()> {
        let table = self.qualified(&t.name);
        for c in &t.columns {
            let Some(old) = existing.get(&c.name) else {
                self.exec(&format!(
                    "ALTER TABLE {table} ADD COLUMN {} {}",
                    ident(&c.name),
                    c.ty.duckdb_type()
                ))?;
                tracing::info!(table = %t.name, column = %c.name, r#type = %c.ty, "added column");
                continue;
            };
            // A column declared with another type than it has: never ignored.
            let Some(old) = ColumnType::from_duckdb(old) else {
                continue;
            };
            match TypeChange::of(old, c.ty) {
                TypeChange::Keep => {}
                TypeChange::Widen => {
                    self.exec(&format!(
                        "ALTER TABLE {table} ALTER COLUMN {} TYPE {}",
                        ident(&c.name),
                        c.ty.duckdb_type()
                    ))?;
                    tracing::info!(table = %t.name, column = %c.name, from = %old, to = %c.ty, "widened column");
                }
                TypeChange::Refuse => {
                    let why = "which cannot hold them all";
                    return Err(Error::refused(
                        self.path.display().to_string(),
                        TypeChange::refused(&t.name, &c.name, old, c.ty, why),
                    ));
                }
            }
        }
        if !existing.contains_key(t.deleted_column) {
            self.exec(&format!(
                "ALTER TABLE {table} ADD COLUMN {} BOOLEAN NOT NULL DEFAULT false",
                ident(t.deleted_column)
            ))?;
        }
        Ok(())
    }

    /// The table's columns and their DuckDB types (none: no such table).
    pub(super) fn existing_columns(&self, table: &str) -> Result<HashMap<String, String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT column_name, data_type FROM information_schema.columns \
                      WHERE table_catalog = current_database() AND table_schema = ? AND table_name = ?")
            .map_err(|e| self.err("reading columns", e))?;
        let rows = stmt
            .query_map([&self.schema, table], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| self.err("reading columns", e))?;
        rows.collect::<std::result::Result<HashMap<_, _>, _>>()
            .map_err(|e| self.err("reading columns", e))
    }

    /// Add columns a batch carries that the table lacks (inferred columns).
    pub(super) fn ensure_batch_columns(&mut self, t: &TableSchema, schema: &Schema) -> Result<()> {
        self.ensure_table(t)?;
        let missing: Vec<_> = schema
            .fields()
            .iter()
            .filter(|f| !self.columns[&t.name].contains(f.name()))
            .cloned()
            .collect();
        for f in missing {
            let declared =
                crate::schema::declared_type_of(&f).filter(|t| t.arrow_type() == *f.data_type());
            let ty = declared
                .map(|t| t.duckdb_type())
                .or_else(|| duckdb_type_of(f.data_type()))
                .ok_or_else(|| {
                    self.err(
                        format!("table {}, column {}", t.name, f.name()),
                        "unsupported Arrow type",
                    )
                })?;
            self.exec(&format!(
                "ALTER TABLE {} ADD COLUMN {} {ty}",
                self.qualified(&t.name),
                ident(f.name())
            ))?;
            tracing::info!(table = %t.name, column = %f.name(), r#type = %ty, "added column");
            self.columns
                .get_mut(&t.name)
                .expect("ensured")
                .insert(f.name().clone());
        }
        Ok(())
    }
}
