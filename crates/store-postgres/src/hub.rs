//! The edge-to-hub sync's storage on PostgreSQL: **not ported yet**. Every method answers
//! a backend error saying so, and `confer serve` refuses `hub_role` with a `database_url`
//! (`crates/server/src/lib.rs`), so a hub runs on the embedded SQLite storage for now.

use async_trait::async_trait;
use confer_core::hub::{HubBatchItem, HubBox, HubGroup, HubLinkKind, HubLog, HubSetting};
use confer_core::store::{HubStore, StoreError, StoreResult};
use confer_core::{GroupId, Json, Uin};

use crate::PgStore;

fn not_ported<T>() -> StoreResult<T> {
    Err(StoreError::Backend(
        "the edge-to-hub sync's storage is not available on PostgreSQL yet".into(),
    ))
}

#[async_trait]
impl HubStore for PgStore {
    async fn hub_add_key(
        &self,
        _boxid: &str,
        _token_hash: [u8; 32],
        _replace: bool,
        _now_us: i64,
    ) -> StoreResult<()> {
        not_ported()
    }
    async fn hub_keys(&self, _boxid: &str) -> StoreResult<Vec<[u8; 32]>> {
        not_ported()
    }
    async fn hub_remove_keys(&self, _boxid: &str) -> StoreResult<bool> {
        not_ported()
    }
    async fn hub_box(&self, _boxid: &str) -> StoreResult<Option<HubBox>> {
        not_ported()
    }
    async fn hub_boxes(&self) -> StoreResult<Vec<HubBox>> {
        not_ported()
    }
    async fn hub_remove_box(&self, _boxid: &str) -> StoreResult<bool> {
        not_ported()
    }
    async fn hub_set_roster(
        &self,
        _boxid: &str,
        _roster: Json,
        _key_hint: String,
        _siteip: String,
        _teachers: Vec<(String, String)>,
        _now_us: i64,
    ) -> StoreResult<()> {
        not_ported()
    }
    async fn hub_teacher_by_email(&self, _email: &str) -> StoreResult<Option<String>> {
        not_ported()
    }
    async fn hub_link(&self, _kind: HubLinkKind, _key: &str) -> StoreResult<Option<u64>> {
        not_ported()
    }
    async fn hub_set_link(&self, _kind: HubLinkKind, _key: &str, _id: u64) -> StoreResult<bool> {
        not_ported()
    }
    async fn hub_claim_attachment(&self, _item_id: u64, _owner: Uin) -> StoreResult<()> {
        not_ported()
    }
    async fn hub_add_group(&self, _boxid: &str, _group: GroupId) -> StoreResult<()> {
        not_ported()
    }
    async fn hub_groups(&self, _boxid: &str) -> StoreResult<Vec<HubGroup>> {
        not_ported()
    }
    async fn hub_prepare_batch(
        &self,
        _boxid: &str,
        _since: i64,
        _items: Vec<HubBatchItem>,
        _marks: Vec<HubGroup>,
        _now_secs: i64,
    ) -> StoreResult<()> {
        not_ported()
    }
    async fn hub_take_batch(&self, _boxid: &str, _since: i64) -> StoreResult<Vec<HubBatchItem>> {
        not_ported()
    }
    async fn hub_add_logs(
        &self,
        _boxid: &str,
        _kind: &str,
        _items: Vec<Json>,
        _now_us: i64,
    ) -> StoreResult<()> {
        not_ported()
    }
    async fn hub_logs(&self, _boxid: &str, _limit: usize) -> StoreResult<Vec<HubLog>> {
        not_ported()
    }
    async fn hub_queue_setting(
        &self,
        _boxid: &str,
        _key: &str,
        _value: &str,
        _now_secs: i64,
    ) -> StoreResult<HubSetting> {
        not_ported()
    }
    async fn hub_settings(&self, _boxid: &str) -> StoreResult<Vec<HubSetting>> {
        not_ported()
    }
    async fn hub_delete_setting(&self, _boxid: &str, _id: u64) -> StoreResult<bool> {
        not_ported()
    }
    async fn set_account_admin(&self, _uin: Uin, _admin: bool) -> StoreResult<()> {
        not_ported()
    }
    async fn account_is_admin(&self, _uin: Uin) -> StoreResult<bool> {
        not_ported()
    }
}
