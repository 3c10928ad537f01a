//! Tests of the state machine alone: Linux's permission rules as `apply` checks them for a
//! caller, the records of the tier, of the data-reduction index and of reduced files, and the
//! encodings of what it keeps and replicates.

mod as_caller;
mod encodings;
mod reduce_index;
mod reducing;
mod snap_images;
mod snaps;
mod tiering;
mod writes;
mod xattrs;

use crate::testing::*;
use crate::*;
