//! `RaftLogStorage` and `RaftLogReader` of one shard, over the node's log (`log::ShardLog`).

use std::fmt::Debug;
use std::ops::RangeBounds;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use super::entry::{log_write_err, vote_write_err, Cfg, Entry, LogId, StorageError, Vote};
use super::log::ShardLog;

impl RaftLogReader<Cfg> for ShardLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let m = self.mem().map_err(log_write_err)?;
        Ok(m.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<Cfg> for ShardLog {
    type LogReader = ShardLog;

    async fn get_log_state(&mut self) -> Result<LogState<Cfg>, StorageError> {
        let m = self.mem().map_err(log_write_err)?;
        Ok(LogState {
            last_purged_log_id: m.purged,
            last_log_id: m.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        ShardLog::save_vote(self, *vote)
            .await
            .map_err(vote_write_err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.mem().map_err(vote_write_err)?.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        ShardLog::save_committed(self, committed).map_err(log_write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.mem().map_err(log_write_err)?.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<Cfg>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let done = Box::new(move |r| callback.log_io_completed(r));
        ShardLog::append(self, entries.into_iter().collect(), done).map_err(log_write_err)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        ShardLog::truncate(self, log_id.index).map_err(log_write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        ShardLog::purge(self, log_id).map_err(log_write_err)
    }
}
