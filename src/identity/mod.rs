//! Who the client is and what the backend is told: RFC 7589 §7 cert-to-name
//! rules over the verified certificate chain, the few certificate fields
//! they need (a small DER reader), the client's address as shown, and the
//! backend session headers (ConfD's, netconfd's). Pure functions of their
//! inputs.

pub mod addr;
pub mod der;
pub mod header;
pub mod rules;
