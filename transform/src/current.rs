//! A table whose content is whatever batch the pipeline is processing now.

use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

#[derive(Debug)]
pub struct CurrentBatch {
    schema: SchemaRef,
    batch: Mutex<Option<RecordBatch>>,
}

impl CurrentBatch {
    pub fn new(schema: SchemaRef) -> Arc<Self> {
        Arc::new(Self {
            schema,
            batch: Mutex::new(None),
        })
    }

    pub fn set(&self, batch: RecordBatch) {
        *self.batch.lock().expect("not poisoned") = Some(batch);
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub fn clear(&self) {
        *self.batch.lock().expect("not poisoned") = None;
    }
}

#[async_trait]
impl TableProvider for CurrentBatch {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch = self.batch.lock().expect("not poisoned").clone();
        let partitions = vec![batch.into_iter().collect()];
        MemTable::try_new(self.schema.clone(), partitions)?
            .scan(state, projection, filters, limit)
            .await
    }
}
