//! The built-in table of every ISO 3166-1 alpha-2 country, with its MaxMind continent and a
//! representative point for when the GeoIP database only knows the country: the capital (or the
//! main population centre where the capital is unrepresentative), since steering cares where users
//! are, not the centroid. Continents: MaxMind GeoLite2 locations; points: public gazetteers, 0.01°.

use serde::Serialize;

use Continent::{Africa, Antarctica, Asia, Europe, NorthAmerica, Oceania, SouthAmerica};

/// A continent, as MaxMind's GeoIP databases classify countries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Continent {
    Africa,
    Antarctica,
    Asia,
    Europe,
    NorthAmerica,
    Oceania,
    SouthAmerica,
}

impl Continent {
    /// Every continent, in declaration order.
    pub const ALL: [Continent; 7] = [
        Continent::Africa,
        Continent::Antarctica,
        Continent::Asia,
        Continent::Europe,
        Continent::NorthAmerica,
        Continent::Oceania,
        Continent::SouthAmerica,
    ];

    /// The two-letter continent code MaxMind uses (`AF`, `AN`, `AS`, `EU`, `NA`, `OC`, `SA`).
    pub fn code(self) -> &'static str {
        match self {
            Continent::Africa => "AF",
            Continent::Antarctica => "AN",
            Continent::Asia => "AS",
            Continent::Europe => "EU",
            Continent::NorthAmerica => "NA",
            Continent::Oceania => "OC",
            Continent::SouthAmerica => "SA",
        }
    }

    /// Parses a MaxMind continent code, ignoring ASCII case.
    pub fn from_code(code: &str) -> Option<Continent> {
        Continent::ALL
            .into_iter()
            .find(|c| c.code().eq_ignore_ascii_case(code))
    }
}

/// One ISO 3166-1 alpha-2 country and the point that stands for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Country {
    /// Upper-case ISO 3166-1 alpha-2 code.
    pub code: &'static str,
    /// Short English name.
    pub name: &'static str,
    /// Continent as MaxMind assigns it.
    pub continent: Continent,
    /// Latitude of the representative point, in degrees.
    pub lat: f64,
    /// Longitude of the representative point, in degrees.
    pub lon: f64,
}

const fn country(
    code: &'static str,
    name: &'static str,
    continent: Continent,
    lat: f64,
    lon: f64,
) -> Country {
    Country {
        code,
        name,
        continent,
        lat,
        lon,
    }
}

/// All 249 officially assigned ISO 3166-1 alpha-2 codes, sorted by code. The point is the
/// capital unless a comment says otherwise.
#[rustfmt::skip]
pub static COUNTRIES: [Country; 249] = [
    country("AD", "Andorra", Europe, 42.51, 1.52),
    country("AE", "United Arab Emirates", Asia, 24.45, 54.38),
    country("AF", "Afghanistan", Asia, 34.53, 69.17),
    country("AG", "Antigua and Barbuda", NorthAmerica, 17.12, -61.85),
    country("AI", "Anguilla", NorthAmerica, 18.22, -63.06),
    country("AL", "Albania", Europe, 41.33, 19.82),
    country("AM", "Armenia", Asia, 40.18, 44.51),
    country("AO", "Angola", Africa, -8.84, 13.23),
    country("AQ", "Antarctica", Antarctica, -77.85, 166.67), // McMurdo Station.
    country("AR", "Argentina", SouthAmerica, -34.60, -58.38),
    country("AS", "American Samoa", Oceania, -14.28, -170.70),
    country("AT", "Austria", Europe, 48.21, 16.37),
    country("AU", "Australia", Oceania, -35.28, 149.13),
    country("AW", "Aruba", NorthAmerica, 12.52, -70.03),
    country("AX", "Åland Islands", Europe, 60.10, 19.94),
    country("AZ", "Azerbaijan", Asia, 40.41, 49.87),
    country("BA", "Bosnia and Herzegovina", Europe, 43.86, 18.41),
    country("BB", "Barbados", NorthAmerica, 13.10, -59.62),
    country("BD", "Bangladesh", Asia, 23.81, 90.41),
    country("BE", "Belgium", Europe, 50.85, 4.35),
    country("BF", "Burkina Faso", Africa, 12.37, -1.52),
    country("BG", "Bulgaria", Europe, 42.70, 23.32),
    country("BH", "Bahrain", Asia, 26.23, 50.59),
    country("BI", "Burundi", Africa, -3.38, 29.36), // Bujumbura; Gitega is the capital.
    country("BJ", "Benin", Africa, 6.50, 2.60),
    country("BL", "Saint Barthélemy", NorthAmerica, 17.90, -62.85),
    country("BM", "Bermuda", NorthAmerica, 32.29, -64.78),
    country("BN", "Brunei", Asia, 4.90, 114.94),
    country("BO", "Bolivia", SouthAmerica, -16.50, -68.15), // La Paz, seat of government.
    country("BQ", "Bonaire, Sint Eustatius and Saba", NorthAmerica, 12.15, -68.27),
    country("BR", "Brazil", SouthAmerica, -15.79, -47.88),
    country("BS", "Bahamas", NorthAmerica, 25.05, -77.35),
    country("BT", "Bhutan", Asia, 27.47, 89.64),
    country("BV", "Bouvet Island", Antarctica, -54.42, 3.36), // Uninhabited; island centre.
    country("BW", "Botswana", Africa, -24.65, 25.91),
    country("BY", "Belarus", Europe, 53.90, 27.56),
    country("BZ", "Belize", NorthAmerica, 17.25, -88.77),
    country("CA", "Canada", NorthAmerica, 45.42, -75.70),
    country("CC", "Cocos (Keeling) Islands", Asia, -12.19, 96.83),
    country("CD", "DR Congo", Africa, -4.32, 15.31),
    country("CF", "Central African Republic", Africa, 4.39, 18.56),
    country("CG", "Republic of the Congo", Africa, -4.27, 15.28),
    country("CH", "Switzerland", Europe, 46.95, 7.45),
    country("CI", "Côte d'Ivoire", Africa, 5.36, -4.01), // Abidjan; Yamoussoukro is the capital.
    country("CK", "Cook Islands", Oceania, -21.21, -159.78),
    country("CL", "Chile", SouthAmerica, -33.45, -70.67),
    country("CM", "Cameroon", Africa, 3.87, 11.52),
    country("CN", "China", Asia, 39.90, 116.41),
    country("CO", "Colombia", SouthAmerica, 4.71, -74.07),
    country("CR", "Costa Rica", NorthAmerica, 9.93, -84.08),
    country("CU", "Cuba", NorthAmerica, 23.11, -82.37),
    country("CV", "Cabo Verde", Africa, 14.93, -23.51),
    country("CW", "Curaçao", NorthAmerica, 12.11, -68.93),
    country("CX", "Christmas Island", Oceania, -10.42, 105.68),
    country("CY", "Cyprus", Europe, 35.17, 33.37),
    country("CZ", "Czechia", Europe, 50.08, 14.44),
    country("DE", "Germany", Europe, 52.52, 13.40),
    country("DJ", "Djibouti", Africa, 11.59, 43.15),
    country("DK", "Denmark", Europe, 55.68, 12.57),
    country("DM", "Dominica", NorthAmerica, 15.30, -61.39),
    country("DO", "Dominican Republic", NorthAmerica, 18.49, -69.93),
    country("DZ", "Algeria", Africa, 36.75, 3.06),
    country("EC", "Ecuador", SouthAmerica, -0.18, -78.47),
    country("EE", "Estonia", Europe, 59.44, 24.75),
    country("EG", "Egypt", Africa, 30.04, 31.24),
    country("EH", "Western Sahara", Africa, 27.15, -13.20),
    country("ER", "Eritrea", Africa, 15.32, 38.93),
    country("ES", "Spain", Europe, 40.42, -3.70),
    country("ET", "Ethiopia", Africa, 9.03, 38.74),
    country("FI", "Finland", Europe, 60.17, 24.94),
    country("FJ", "Fiji", Oceania, -18.14, 178.44),
    country("FK", "Falkland Islands", SouthAmerica, -51.70, -57.85),
    country("FM", "Micronesia", Oceania, 6.92, 158.16),
    country("FO", "Faroe Islands", Europe, 62.01, -6.77),
    country("FR", "France", Europe, 48.86, 2.35),
    country("GA", "Gabon", Africa, 0.42, 9.47),
    country("GB", "United Kingdom", Europe, 51.51, -0.13),
    country("GD", "Grenada", NorthAmerica, 12.06, -61.75),
    country("GE", "Georgia", Asia, 41.72, 44.79),
    country("GF", "French Guiana", SouthAmerica, 4.94, -52.33),
    country("GG", "Guernsey", Europe, 49.46, -2.54),
    country("GH", "Ghana", Africa, 5.60, -0.19),
    country("GI", "Gibraltar", Europe, 36.14, -5.35),
    country("GL", "Greenland", NorthAmerica, 64.18, -51.72),
    country("GM", "Gambia", Africa, 13.45, -16.58),
    country("GN", "Guinea", Africa, 9.51, -13.71),
    country("GP", "Guadeloupe", NorthAmerica, 16.00, -61.73),
    country("GQ", "Equatorial Guinea", Africa, 3.75, 8.78),
    country("GR", "Greece", Europe, 37.98, 23.73),
    country("GS", "South Georgia and the South Sandwich Islands", Antarctica, -54.28, -36.51),
    country("GT", "Guatemala", NorthAmerica, 14.63, -90.51),
    country("GU", "Guam", Oceania, 13.48, 144.75),
    country("GW", "Guinea-Bissau", Africa, 11.86, -15.60),
    country("GY", "Guyana", SouthAmerica, 6.80, -58.16),
    country("HK", "Hong Kong", Asia, 22.32, 114.17),
    country("HM", "Heard Island and McDonald Islands", Antarctica, -53.10, 73.52), // Heard Island.
    country("HN", "Honduras", NorthAmerica, 14.07, -87.19),
    country("HR", "Croatia", Europe, 45.81, 15.98),
    country("HT", "Haiti", NorthAmerica, 18.54, -72.34),
    country("HU", "Hungary", Europe, 47.50, 19.04),
    country("ID", "Indonesia", Asia, -6.21, 106.85),
    country("IE", "Ireland", Europe, 53.35, -6.26),
    country("IL", "Israel", Asia, 32.09, 34.78), // Tel Aviv, the main population centre.
    country("IM", "Isle of Man", Europe, 54.15, -4.48),
    country("IN", "India", Asia, 28.61, 77.21),
    country("IO", "British Indian Ocean Territory", Asia, -7.31, 72.42), // Diego Garcia.
    country("IQ", "Iraq", Asia, 33.31, 44.37),
    country("IR", "Iran", Asia, 35.69, 51.39),
    country("IS", "Iceland", Europe, 64.15, -21.94),
    country("IT", "Italy", Europe, 41.90, 12.50),
    country("JE", "Jersey", Europe, 49.19, -2.11),
    country("JM", "Jamaica", NorthAmerica, 17.97, -76.79),
    country("JO", "Jordan", Asia, 31.95, 35.93),
    country("JP", "Japan", Asia, 35.68, 139.69),
    country("KE", "Kenya", Africa, -1.29, 36.82),
    country("KG", "Kyrgyzstan", Asia, 42.87, 74.59),
    country("KH", "Cambodia", Asia, 11.56, 104.92),
    country("KI", "Kiribati", Oceania, 1.33, 172.98),
    country("KM", "Comoros", Africa, -11.70, 43.26),
    country("KN", "Saint Kitts and Nevis", NorthAmerica, 17.30, -62.72),
    country("KP", "North Korea", Asia, 39.04, 125.76),
    country("KR", "South Korea", Asia, 37.57, 126.98),
    country("KW", "Kuwait", Asia, 29.38, 47.99),
    country("KY", "Cayman Islands", NorthAmerica, 19.29, -81.38),
    country("KZ", "Kazakhstan", Asia, 51.17, 71.45),
    country("LA", "Laos", Asia, 17.98, 102.63),
    country("LB", "Lebanon", Asia, 33.89, 35.50),
    country("LC", "Saint Lucia", NorthAmerica, 14.01, -60.99),
    country("LI", "Liechtenstein", Europe, 47.14, 9.52),
    country("LK", "Sri Lanka", Asia, 6.93, 79.86), // Colombo, beside Sri Jayawardenepura Kotte.
    country("LR", "Liberia", Africa, 6.30, -10.80),
    country("LS", "Lesotho", Africa, -29.31, 27.48),
    country("LT", "Lithuania", Europe, 54.69, 25.28),
    country("LU", "Luxembourg", Europe, 49.61, 6.13),
    country("LV", "Latvia", Europe, 56.95, 24.11),
    country("LY", "Libya", Africa, 32.89, 13.19),
    country("MA", "Morocco", Africa, 34.02, -6.84),
    country("MC", "Monaco", Europe, 43.73, 7.42),
    country("MD", "Moldova", Europe, 47.01, 28.86),
    country("ME", "Montenegro", Europe, 42.44, 19.26),
    country("MF", "Saint Martin", NorthAmerica, 18.07, -63.08),
    country("MG", "Madagascar", Africa, -18.88, 47.51),
    country("MH", "Marshall Islands", Oceania, 7.09, 171.38),
    country("MK", "North Macedonia", Europe, 42.00, 21.43),
    country("ML", "Mali", Africa, 12.64, -8.00),
    country("MM", "Myanmar", Asia, 16.87, 96.20), // Yangon; Naypyidaw is the capital.
    country("MN", "Mongolia", Asia, 47.92, 106.92),
    country("MO", "Macao", Asia, 22.20, 113.54),
    country("MP", "Northern Mariana Islands", Oceania, 15.21, 145.75),
    country("MQ", "Martinique", NorthAmerica, 14.60, -61.07),
    country("MR", "Mauritania", Africa, 18.08, -15.98),
    country("MS", "Montserrat", NorthAmerica, 16.79, -62.21), // Brades; Plymouth is abandoned.
    country("MT", "Malta", Europe, 35.90, 14.51),
    country("MU", "Mauritius", Africa, -20.16, 57.50),
    country("MV", "Maldives", Asia, 4.18, 73.51),
    country("MW", "Malawi", Africa, -13.96, 33.79),
    country("MX", "Mexico", NorthAmerica, 19.43, -99.13),
    country("MY", "Malaysia", Asia, 3.15, 101.69),
    country("MZ", "Mozambique", Africa, -25.97, 32.57),
    country("NA", "Namibia", Africa, -22.56, 17.08),
    country("NC", "New Caledonia", Oceania, -22.28, 166.46),
    country("NE", "Niger", Africa, 13.51, 2.11),
    country("NF", "Norfolk Island", Oceania, -29.06, 167.96),
    country("NG", "Nigeria", Africa, 9.08, 7.40),
    country("NI", "Nicaragua", NorthAmerica, 12.13, -86.25),
    country("NL", "Netherlands", Europe, 52.37, 4.90),
    country("NO", "Norway", Europe, 59.91, 10.75),
    country("NP", "Nepal", Asia, 27.72, 85.32),
    country("NR", "Nauru", Oceania, -0.55, 166.92),
    country("NU", "Niue", Oceania, -19.06, -169.92),
    country("NZ", "New Zealand", Oceania, -41.29, 174.78),
    country("OM", "Oman", Asia, 23.59, 58.41),
    country("PA", "Panama", NorthAmerica, 8.98, -79.52),
    country("PE", "Peru", SouthAmerica, -12.05, -77.04),
    country("PF", "French Polynesia", Oceania, -17.53, -149.57),
    country("PG", "Papua New Guinea", Oceania, -9.44, 147.18),
    country("PH", "Philippines", Asia, 14.60, 120.98),
    country("PK", "Pakistan", Asia, 33.69, 73.06),
    country("PL", "Poland", Europe, 52.23, 21.01),
    country("PM", "Saint Pierre and Miquelon", NorthAmerica, 46.78, -56.18),
    country("PN", "Pitcairn Islands", Oceania, -25.07, -130.10),
    country("PR", "Puerto Rico", NorthAmerica, 18.47, -66.11),
    country("PS", "Palestine", Asia, 31.90, 35.20), // Ramallah, the administrative centre.
    country("PT", "Portugal", Europe, 38.72, -9.14),
    country("PW", "Palau", Oceania, 7.34, 134.48), // Koror; Ngerulmud is the capital.
    country("PY", "Paraguay", SouthAmerica, -25.26, -57.58),
    country("QA", "Qatar", Asia, 25.29, 51.53),
    country("RE", "Réunion", Africa, -20.88, 55.45),
    country("RO", "Romania", Europe, 44.43, 26.10),
    country("RS", "Serbia", Europe, 44.82, 20.46),
    country("RU", "Russia", Europe, 55.76, 37.62),
    country("RW", "Rwanda", Africa, -1.95, 30.06),
    country("SA", "Saudi Arabia", Asia, 24.71, 46.68),
    country("SB", "Solomon Islands", Oceania, -9.43, 159.95),
    country("SC", "Seychelles", Africa, -4.62, 55.45),
    country("SD", "Sudan", Africa, 15.50, 32.56),
    country("SE", "Sweden", Europe, 59.33, 18.07),
    country("SG", "Singapore", Asia, 1.29, 103.85),
    country("SH", "Saint Helena, Ascension and Tristan da Cunha", Africa, -15.92, -5.72),
    country("SI", "Slovenia", Europe, 46.06, 14.51),
    country("SJ", "Svalbard and Jan Mayen", Europe, 78.22, 15.65),
    country("SK", "Slovakia", Europe, 48.15, 17.11),
    country("SL", "Sierra Leone", Africa, 8.48, -13.23),
    country("SM", "San Marino", Europe, 43.94, 12.45),
    country("SN", "Senegal", Africa, 14.69, -17.45),
    country("SO", "Somalia", Africa, 2.05, 45.32),
    country("SR", "Suriname", SouthAmerica, 5.85, -55.17),
    country("SS", "South Sudan", Africa, 4.85, 31.58),
    country("ST", "São Tomé and Príncipe", Africa, 0.34, 6.73),
    country("SV", "El Salvador", NorthAmerica, 13.69, -89.19),
    country("SX", "Sint Maarten", NorthAmerica, 18.03, -63.05),
    country("SY", "Syria", Asia, 33.51, 36.29),
    country("SZ", "Eswatini", Africa, -26.31, 31.14),
    country("TC", "Turks and Caicos Islands", NorthAmerica, 21.46, -71.14),
    country("TD", "Chad", Africa, 12.11, 15.04),
    country("TF", "French Southern Territories", Antarctica, -49.35, 70.22),
    country("TG", "Togo", Africa, 6.13, 1.22),
    country("TH", "Thailand", Asia, 13.76, 100.50),
    country("TJ", "Tajikistan", Asia, 38.56, 68.78),
    country("TK", "Tokelau", Oceania, -9.17, -171.83), // Nukunonu; Tokelau has no capital.
    country("TL", "Timor-Leste", Oceania, -8.55, 125.58),
    country("TM", "Turkmenistan", Asia, 37.96, 58.33),
    country("TN", "Tunisia", Africa, 36.81, 10.18),
    country("TO", "Tonga", Oceania, -21.13, -175.20),
    country("TR", "Türkiye", Asia, 39.93, 32.86),
    country("TT", "Trinidad and Tobago", NorthAmerica, 10.66, -61.52),
    country("TV", "Tuvalu", Oceania, -8.52, 179.19),
    country("TW", "Taiwan", Asia, 25.03, 121.57),
    country("TZ", "Tanzania", Africa, -6.79, 39.21), // Dar es Salaam; Dodoma is the capital.
    country("UA", "Ukraine", Europe, 50.45, 30.52),
    country("UG", "Uganda", Africa, 0.31, 32.58),
    country("UM", "United States Minor Outlying Islands", Oceania, 19.28, 166.63), // Wake Island.
    country("US", "United States", NorthAmerica, 38.90, -77.04),
    country("UY", "Uruguay", SouthAmerica, -34.90, -56.19),
    country("UZ", "Uzbekistan", Asia, 41.31, 69.28),
    country("VA", "Vatican City", Europe, 41.90, 12.45),
    country("VC", "Saint Vincent and the Grenadines", NorthAmerica, 13.16, -61.23),
    country("VE", "Venezuela", SouthAmerica, 10.49, -66.88),
    country("VG", "British Virgin Islands", NorthAmerica, 18.43, -64.62),
    country("VI", "U.S. Virgin Islands", NorthAmerica, 18.34, -64.93),
    country("VN", "Vietnam", Asia, 21.03, 105.85),
    country("VU", "Vanuatu", Oceania, -17.73, 168.32),
    country("WF", "Wallis and Futuna", Oceania, -13.28, -176.18),
    country("WS", "Samoa", Oceania, -13.83, -171.77),
    country("YE", "Yemen", Asia, 15.37, 44.19),
    country("YT", "Mayotte", Africa, -12.78, 45.23),
    country("ZA", "South Africa", Africa, -25.75, 28.19),
    country("ZM", "Zambia", Africa, -15.42, 28.28),
    country("ZW", "Zimbabwe", Africa, -17.83, 31.05),
];

/// Finds a country by its alpha-2 code, ignoring ASCII case. Does not allocate.
pub fn lookup(code: &str) -> Option<&'static Country> {
    index(code).map(|i| &COUNTRIES[usize::from(i)])
}

/// The position of a country in [`COUNTRIES`], by its alpha-2 code, ignoring ASCII case: what
/// stands for a country where memory counts (the location table's places).
pub fn index(code: &str) -> Option<u16> {
    let &[a, b] = code.as_bytes() else {
        return None;
    };
    let key = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
    let i = COUNTRIES
        .binary_search_by(|c| c.code.as_bytes().cmp(&key[..]))
        .ok()?;
    Some(u16::try_from(i).expect("COUNTRIES holds 249 entries"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_well_formed() {
        for c in &COUNTRIES {
            assert_eq!(c.code.len(), 2, "{c:?}");
            assert!(c.code.bytes().all(|b| b.is_ascii_uppercase()), "{c:?}");
            assert!(!c.name.is_empty(), "{c:?}");
        }
        for w in COUNTRIES.windows(2) {
            assert!(w[0].code < w[1].code, "{} !< {}", w[0].code, w[1].code);
        }
    }

    #[test]
    fn has_all_249_codes() {
        assert_eq!(COUNTRIES.len(), 249);
        assert!(lookup("XK").is_none(), "Kosovo is not an official ISO code");
    }

    #[test]
    fn coordinates_in_range() {
        for c in &COUNTRIES {
            assert!((-90.0..=90.0).contains(&c.lat), "{c:?}");
            assert!((-180.0..=180.0).contains(&c.lon), "{c:?}");
        }
    }

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(lookup("us").unwrap().code, "US");
        assert_eq!(lookup("Us").unwrap().name, "United States");
        assert_eq!(lookup("DE").unwrap().name, "Germany");
        assert_eq!(lookup("ad").unwrap().code, "AD");
        assert_eq!(lookup("zw").unwrap().code, "ZW");
        for c in &COUNTRIES {
            assert_eq!(lookup(c.code), Some(c));
            assert_eq!(lookup(&c.code.to_ascii_lowercase()), Some(c));
        }
    }

    #[test]
    fn lookup_misses() {
        assert!(lookup("XX").is_none());
        assert!(lookup("").is_none());
        assert!(lookup("U").is_none());
        assert!(lookup("USA").is_none());
        assert!(lookup("ü").is_none());
    }

    #[test]
    fn continent_spot_checks() {
        let cont = |code| lookup(code).unwrap().continent;
        assert_eq!(cont("FR"), Europe);
        assert_eq!(cont("JP"), Asia);
        assert_eq!(cont("BR"), SouthAmerica);
        assert_eq!(cont("AU"), Oceania);
        assert_eq!(cont("NG"), Africa);
        assert_eq!(cont("US"), NorthAmerica);
        assert_eq!(cont("AQ"), Antarctica);
        // MaxMind's choices where geography is debatable.
        assert_eq!(cont("RU"), Europe);
        assert_eq!(cont("TR"), Asia);
        assert_eq!(cont("CY"), Europe);
        assert_eq!(cont("EG"), Africa);
        assert_eq!(cont("PA"), NorthAmerica);
    }

    #[test]
    fn continent_codes_round_trip() {
        for c in Continent::ALL {
            assert_eq!(Continent::from_code(c.code()), Some(c));
            assert_eq!(
                Continent::from_code(&c.code().to_ascii_lowercase()),
                Some(c)
            );
        }
        assert_eq!(Continent::from_code("na"), Some(NorthAmerica));
        assert_eq!(Continent::from_code("XX"), None);
        assert_eq!(Continent::from_code(""), None);
    }
}
