//! Which CRL decides for each issuer.
//!
//! RFC 5280 §6.3.3 checks a certificate against the current complete CRL of
//! its issuer. rustls-webpki instead uses the first CRL whose issuer matches
//! (rustls/webpki#488), so with several CRLs from one CA the order of the
//! `--crl` files, or of the blocks inside one file, would decide whether a
//! revoked client gets in. nctls therefore hands rustls exactly one CRL per
//! issuer and scope: the newest, by the rules in [`select`].

use std::cmp::Ordering;

use rustls::pki_types::CertificateRevocationListDer;

use crate::identity::der::{self, CrlFields};

/// One CRL as loaded, with the fields that rank it.
#[derive(Clone, Debug)]
pub struct Crl {
    /// The CRL as read, handed to rustls when it is the current one.
    pub der: CertificateRevocationListDer<'static>,
    /// Its issuer, dates, number and scope.
    pub fields: CrlFields,
}

impl Crl {
    /// Reads the fields of a DER CRL; the error says what could not be read.
    pub fn parse(der: CertificateRevocationListDer<'static>) -> Result<Crl, String> {
        let fields = der::crl_fields(&der)
            .ok_or("not a readable CRL (expected an X.509 v2 CRL with thisUpdate)")?;
        Ok(Crl { der, fields })
    }

    /// Whether `other` speaks for the same certificates: the same issuer
    /// name and the same issuing distribution point (or none).
    fn same_scope(&self, other: &Crl) -> bool {
        self.fields.issuer == other.fields.issuer && self.fields.scope == other.fields.scope
    }

    /// Newer is greater: the higher cRLNumber (a CRL without one counts as
    /// older than any with one), then the later thisUpdate. Exact ties (the
    /// same CRL loaded twice, or an issuer reusing a number) fall back to the
    /// later nextUpdate and then the DER bytes, so the result never depends
    /// on the order the CRLs were given in.
    fn recency(&self, other: &Crl) -> Ordering {
        let (a, b) = (&self.fields, &other.fields);
        let number = |n: &Option<Vec<u8>>| n.as_ref().map(|bytes| (bytes.len(), bytes.clone()));
        number(&a.number)
            .cmp(&number(&b.number))
            .then(a.this_update.cmp(&b.this_update))
            .then(a.next_update.cmp(&b.next_update))
            .then_with(|| self.der.as_ref().cmp(other.der.as_ref()))
    }
}

/// For each CRL, whether it is the one that decides for its issuer and scope
/// (RFC 5280 §6.3.3: the current complete CRL).
///
/// The newest CRL decides even when it has already expired and an older one
/// has not: the older one is known to be superseded, so its word that a
/// certificate is not revoked is stale, and an expired current CRL is then
/// handled by the expired-CRL policy (refuse) rather than by a list that may
/// lack recent revocations. In practice a newer CRL also has the later
/// nextUpdate, so an expired CRL superseded by a current one changes nothing.
pub fn select(crls: &[Crl]) -> Vec<bool> {
    crls.iter()
        .enumerate()
        .map(|(i, crl)| {
            crls.iter().enumerate().all(|(j, other)| {
                if i == j || !crl.same_scope(other) {
                    return true;
                }
                match crl.recency(other) {
                    Ordering::Greater => true,
                    Ordering::Less => false,
                    // The very same CRL twice: the first copy stands.
                    Ordering::Equal => i < j,
                }
            })
        })
        .collect()
}

/// The CRLs [`select`] chose, in the order given.
pub fn current(crls: &[Crl]) -> Vec<CertificateRevocationListDer<'static>> {
    crls.iter()
        .zip(select(crls))
        .filter(|(_, chosen)| *chosen)
        .map(|(crl, _)| crl.der.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_pki as pki;

    fn crl(der: Vec<u8>) -> Crl {
        Crl::parse(CertificateRevocationListDer::from(der)).unwrap()
    }

    /// Every ordering of `items` (Heap's algorithm).
    fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
        fn heap<T: Clone>(k: usize, items: &mut Vec<T>, out: &mut Vec<Vec<T>>) {
            if k <= 1 {
                out.push(items.clone());
                return;
            }
            for i in 0..k {
                heap(k - 1, items, out);
                let j = if k % 2 == 0 { i } else { 0 };
                items.swap(j, k - 1);
            }
        }
        let mut out = Vec::new();
        heap(items.len(), &mut items.to_vec(), &mut out);
        out
    }

    /// The chosen CRLs' DER, sorted, for comparing selections.
    fn chosen(crls: &[Crl]) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = current(crls).iter().map(|c| c.to_vec()).collect();
        out.sort();
        out
    }

    #[test]
    fn the_newest_crl_of_each_issuer_decides_in_every_order() {
        let a = pki::Ca::new("CA A");
        let b = pki::Ca::new("CA B");
        // A's older list is still valid and revokes nothing; its current
        // one revokes serial 7. An ancient expired one is harmless.
        let older = crl(a.crl(1, (2024, 1, 1), (2099, 1, 1), &[]));
        let current_a = crl(a.crl(2, (2024, 6, 1), (2099, 6, 1), &[&[7]]));
        let ancient = crl(a.crl(0, (2010, 1, 1), (2011, 1, 1), &[]));
        let only_b = crl(b.crl(5, (2024, 1, 1), (2099, 1, 1), &[]));
        let want = {
            let mut w = vec![current_a.der.to_vec(), only_b.der.to_vec()];
            w.sort();
            w
        };
        let all = [older, current_a, ancient, only_b];
        let orders = permutations(&all);
        assert_eq!(orders.len(), 24);
        for order in orders {
            assert_eq!(chosen(&order), want);
            assert_eq!(select(&order).iter().filter(|c| **c).count(), 2);
        }
    }

    #[test]
    fn crl_number_outranks_this_update_and_a_missing_number_is_oldest() {
        let a = pki::Ca::new("CA");
        // Number 3 issued "earlier" than number 2 (a clock fixed later):
        // the number says which is newer.
        let n3 = crl(a.crl(3, (2024, 1, 1), (2099, 1, 1), &[]));
        let n2 = crl(a.crl(2, (2024, 5, 1), (2099, 5, 1), &[]));
        // 256 is longer than 255 in bytes: compared as numbers, not bytes.
        let n255 = crl(a.crl(255, (2024, 1, 1), (2099, 1, 1), &[]));
        let n256 = crl(a.crl(256, (2024, 1, 1), (2099, 1, 1), &[]));
        for order in permutations(&[n3.clone(), n2.clone()]) {
            assert_eq!(chosen(&order), vec![n3.der.to_vec()]);
        }
        for order in permutations(&[n255.clone(), n256.clone()]) {
            assert_eq!(chosen(&order), vec![n256.der.to_vec()]);
        }
        let mut unnumbered = n2.clone();
        unnumbered.fields.number = None;
        unnumbered.fields.this_update += 1_000_000;
        assert_eq!(unnumbered.recency(&n2), Ordering::Less);
        // Without numbers, thisUpdate decides.
        let mut older = unnumbered.clone();
        older.fields.this_update -= 1;
        older.der = CertificateRevocationListDer::from(vec![0xff]);
        assert_eq!(unnumbered.recency(&older), Ordering::Greater);
    }

    #[test]
    fn the_same_crl_twice_is_chosen_once() {
        let a = pki::Ca::new("CA");
        let one = crl(a.crl(1, (2024, 1, 1), (2099, 1, 1), &[]));
        let marks = select(&[one.clone(), one.clone()]);
        assert_eq!(marks, vec![true, false]);
    }

    #[test]
    fn different_scopes_are_kept_apart() {
        let a = pki::Ca::new("CA");
        let users = crl(a.crl(1, (2024, 1, 1), (2099, 1, 1), &[]));
        let mut cas = crl(a.crl(2, (2024, 1, 1), (2099, 1, 1), &[]));
        cas.fields.scope = Some(vec![0x30, 0x03, 0x82, 0x01, 0xff]);
        assert_eq!(select(&[users, cas]), vec![true, true]);
    }

    #[test]
    fn unreadable_crl_says_so() {
        let err = Crl::parse(CertificateRevocationListDer::from(vec![0x30, 0x00])).unwrap_err();
        assert!(err.contains("not a readable CRL"), "{err}");
    }
}
