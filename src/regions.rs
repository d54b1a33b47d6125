//! The police regions persons, cases and officers belong to: the national list shipped
//! with vakt (`data/police-regions.json`), matching a typed region against the list, and
//! the check for stored data that matches none.
//!
//! Region access compares names exactly (`Caller::covers`): a case registered in "norr"
//! is invisible to the officers of "Nord". So every region that enters the store is one
//! of the list, in its canonical spelling, and data from before the list is reported by
//! `vakt regions check`, never rewritten behind anyone's back. Pure, but for
//! `check_store`, which only reads what the check needs.

use serde::{Deserialize, Serialize};

use crate::domain::{Case, Person};
use crate::store::User;

/// A police region (polisregion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Region {
    /// Stable identifier: lower-case ASCII letters, digits and dashes.
    pub code: String,
    /// What persons, cases, users and alerts store as their region.
    pub name: String,
    /// A retired region is kept for the data that still names it, but takes no new data.
    pub retired: bool,
    pub local_areas: Vec<LocalArea>,
}

/// A local police area (lokalpolisområde) of a region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LocalArea {
    pub code: String,
    pub name: String,
    pub retired: bool,
}

#[derive(Deserialize)]
struct ShippedList {
    regions: Vec<ShippedRegion>,
}

#[derive(Deserialize)]
struct ShippedRegion {
    name: String,
    code: String,
    local_areas: Vec<String>,
}

const SHIPPED: &str = include_str!("../data/police-regions.json");

/// The list vakt ships, seeded into a database that has none.
pub fn shipped() -> Vec<Region> {
    // The file is part of the build and a unit test parses it: it cannot be malformed here.
    let list: ShippedList = serde_json::from_str(SHIPPED).expect("data/police-regions.json");
    list.regions
        .into_iter()
        .map(|r| Region {
            code: r.code,
            name: r.name,
            retired: false,
            local_areas: r
                .local_areas
                .into_iter()
                .map(|name| LocalArea {
                    code: code_of(&name),
                    name,
                    retired: false,
                })
                .collect(),
        })
        .collect()
}

/// A code from a name: lower case, Swedish letters without their dots and rings, anything
/// else a single dash ("Haninge/Nynäshamn" → "haninge-nynashamn").
pub fn code_of(name: &str) -> String {
    let mut code = String::new();
    for c in name.trim().to_lowercase().chars() {
        let c = match c {
            'å' | 'ä' | 'á' | 'à' => 'a',
            'ö' | 'ø' | 'ó' => 'o',
            'é' | 'è' => 'e',
            'ü' => 'u',
            c => c,
        };
        if c.is_ascii_alphanumeric() {
            code.push(c);
        } else if !code.is_empty() && !code.ends_with('-') {
            code.push('-');
        }
    }
    code.trim_end_matches('-').to_owned()
}

/// Whether `code` is a well-formed code (what `code_of` makes, or an admin typed alike).
pub fn is_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 64
        && code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !code.starts_with('-')
        && !code.ends_with('-')
}

/// The region in force that `typed` names, by name or code, ignoring case ("norD", "öst",
/// "ost" all find theirs).
pub fn canonical<'a>(regions: &'a [Region], typed: &str) -> Option<&'a Region> {
    let typed = typed.trim().to_lowercase();
    regions
        .iter()
        .filter(|r| !r.retired)
        .find(|r| r.name.to_lowercase() == typed || r.code == typed)
}

/// The names of the regions in force, for a message saying which exist.
pub fn names_in_force(regions: &[Region]) -> String {
    let names: Vec<&str> = regions
        .iter()
        .filter(|r| !r.retired)
        .map(|r| r.name.as_str())
        .collect();
    names.join(", ")
}

/// What holds a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Holder {
    Person,
    Case,
    User,
}

impl Holder {
    fn as_str(self) -> &'static str {
        match self {
            Holder::Person => "person",
            Holder::Case => "case",
            Holder::User => "user",
        }
    }
}

/// Stored data whose region hides it from the officers who should see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// The region is not a region in force, exactly as spelled. `meant`: the region it
    /// matches ignoring case, if any (then only the spelling is wrong).
    NotInList {
        holder: Holder,
        id: String,
        region: String,
        retired: bool,
        meant: Option<String>,
    },
    /// The case is in another region than its person.
    CaseDiffersFromPerson {
        case_id: String,
        case_region: String,
        person_id: String,
        person_region: String,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::NotInList {
                holder,
                id,
                region,
                retired,
                meant,
            } => {
                write!(f, "{} {id}: region \"{region}\" ", holder.as_str())?;
                if *retired {
                    write!(f, "is retired")?;
                } else {
                    write!(f, "is not in the list")?;
                }
                if let Some(m) = meant {
                    write!(f, " (did you mean \"{m}\"?)")?;
                }
                Ok(())
            }
            Finding::CaseDiffersFromPerson {
                case_id,
                case_region,
                person_id,
                person_region,
            } => write!(
                f,
                "case {case_id}: region \"{case_region}\" differs from its person {person_id}'s \"{person_region}\""
            ),
        }
    }
}

/// Every person, case and user whose region is not one in force as spelled, and every case
/// in another region than its person. A person or user with no region is national, not a
/// finding.
pub fn check(
    regions: &[Region],
    persons: &[Person],
    cases: &[Case],
    users: &[User],
) -> Vec<Finding> {
    let not_in_list = |holder: Holder, id: &str, region: &str| {
        let in_force = regions.iter().any(|r| !r.retired && r.name == region);
        (!in_force).then(|| Finding::NotInList {
            holder,
            id: id.to_owned(),
            region: region.to_owned(),
            retired: regions.iter().any(|r| r.retired && r.name == region),
            meant: canonical(regions, region)
                .map(|r| r.name.clone())
                .filter(|m| m != region),
        })
    };
    let mut findings = Vec::new();
    for p in persons {
        if let Some(r) = &p.region {
            findings.extend(not_in_list(Holder::Person, &p.id, r));
        }
    }
    for c in cases {
        findings.extend(not_in_list(Holder::Case, &c.id, &c.region));
    }
    for u in users {
        if let Some(r) = &u.region {
            findings.extend(not_in_list(Holder::User, &u.username, r));
        }
    }
    for c in cases {
        let person_region = persons
            .iter()
            .find(|p| p.id == c.person_id)
            .and_then(|p| p.region.as_ref());
        if let Some(pr) = person_region.filter(|pr| **pr != c.region) {
            findings.push(Finding::CaseDiffersFromPerson {
                case_id: c.id.clone(),
                case_region: c.region.clone(),
                person_id: c.person_id.clone(),
                person_region: pr.clone(),
            });
        }
    }
    findings
}

/// The findings of `check` over everything a store holds.
pub async fn check_store(store: &dyn crate::store::Store) -> crate::store::Result<Vec<Finding>> {
    let (regions, persons, cases, users) = (
        store.regions().await?,
        store.persons().await?,
        store.cases().await?,
        store.users().await?,
    );
    Ok(check(&regions, &persons, &cases, &users))
}

/// The corrections `vakt regions fix-spelling` makes: each stored region that names a
/// region in force in another case (`nord`), with the list's spelling (`Nord`). Unknown
/// and retired regions and cases apart from their person need a person's decision.
pub fn respellings(findings: &[Finding]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = findings
        .iter()
        .filter_map(|f| match f {
            Finding::NotInList {
                region,
                meant: Some(m),
                ..
            } => Some((region.clone(), m.clone())),
            _ => None,
        })
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Risk;
    use crate::store::Role;

    fn person(id: &str, region: Option<&str>) -> Person {
        Person {
            id: id.into(),
            name: "P".into(),
            phone: None,
            address: None,
            protected_identity: false,
            region: region.map(Into::into),
        }
    }

    fn case(id: &str, person: &str, region: &str) -> Case {
        Case {
            id: id.into(),
            reference: id.into(),
            person_id: person.into(),
            risk: Risk::High,
            region: region.into(),
            response_plan: None,
            relatives: vec![],
            closed_at: None,
        }
    }

    fn user(name: &str, region: Option<&str>) -> User {
        User {
            username: name.into(),
            role: Role::Officer,
            region: region.map(Into::into),
            password_hash: String::new(),
            totp_secret: None,
        }
    }

    #[test]
    fn the_shipped_list_holds_the_seven_police_regions_each_with_local_areas() {
        let list = shipped();
        let names: Vec<&str> = list.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Nord",
                "Mitt",
                "Stockholm",
                "Öst",
                "Väst",
                "Syd",
                "Bergslagen"
            ]
        );
        for r in &list {
            assert!(is_code(&r.code), "{}", r.code);
            assert!(!r.local_areas.is_empty(), "{} has local areas", r.name);
            assert!(r.local_areas.iter().all(|a| is_code(&a.code)));
        }
        let mut codes: Vec<&str> = list
            .iter()
            .flat_map(|r| r.local_areas.iter().map(|a| a.code.as_str()))
            .collect();
        let all = codes.len();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all, "local area codes are unique nationwide");
    }

    #[test]
    fn a_code_is_the_name_in_lower_case_ascii_with_dashes() {
        assert_eq!(code_of("Haninge/Nynäshamn"), "haninge-nynashamn");
        assert_eq!(code_of(" Göteborg  Centrum "), "goteborg-centrum");
        assert_eq!(code_of("Öst"), "ost");
        assert!(!is_code("Öst") && !is_code("-a") && !is_code("") && is_code("vast-2"));
    }

    #[test]
    fn a_region_is_found_by_name_or_code_ignoring_case_but_not_when_retired() {
        let mut list = shipped();
        assert_eq!(canonical(&list, "norD").map(|r| &*r.name), Some("Nord"));
        assert_eq!(canonical(&list, "ÖST").map(|r| &*r.name), Some("Öst"));
        assert_eq!(canonical(&list, "vast").map(|r| &*r.name), Some("Väst"));
        assert_eq!(canonical(&list, "norr"), None);
        list[0].retired = true;
        assert_eq!(canonical(&list, "Nord"), None);
        assert!(!names_in_force(&list).contains("Nord"));
    }

    #[test]
    fn the_check_reports_misspelt_unknown_and_retired_regions_and_cases_apart_from_their_person() {
        let mut list = shipped();
        list.iter_mut().find(|r| r.name == "Mitt").unwrap().retired = true;
        let persons = [
            person("p1", Some("Nord")),
            person("p2", Some("nord")),
            person("p3", None),
        ];
        let cases = [
            case("c1", "p1", "Nord"),
            case("c2", "p1", "Syd"),
            case("c3", "p3", "Mitt"),
        ];
        let users = [user("u1", Some("norr")), user("u2", None)];
        let findings = check(&list, &persons, &cases, &users);
        let lines: Vec<String> = findings.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "person p2: region \"nord\" is not in the list (did you mean \"Nord\"?)",
                "case c3: region \"Mitt\" is retired",
                "user u1: region \"norr\" is not in the list",
                "case c2: region \"Syd\" differs from its person p1's \"Nord\"",
            ]
        );
    }

    #[test]
    fn only_a_region_spelt_in_another_case_is_corrected_by_itself_once_per_spelling() {
        let list = shipped();
        let persons = [person("p1", Some("nord")), person("p2", Some("Norrland"))];
        let cases = [case("c1", "p1", "nord"), case("c2", "p1", "SYD")];
        let findings = check(&list, &persons, &cases, &[]);
        assert_eq!(
            respellings(&findings),
            [
                ("SYD".to_owned(), "Syd".to_owned()),
                ("nord".to_owned(), "Nord".to_owned())
            ]
        );
    }

    #[test]
    fn data_that_matches_the_list_gives_no_finding() {
        let list = shipped();
        let persons = [person("p1", Some("Väst")), person("p2", None)];
        let cases = [case("c1", "p1", "Väst"), case("c2", "p2", "Syd")];
        let users = [user("u", Some("Syd")), user("n", None)];
        assert!(check(&list, &persons, &cases, &users).is_empty());
    }
}
