pub mod kdc;
