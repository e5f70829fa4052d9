//! Hit verification: would the stored answer to request A be a correct answer to
//! request B? Similarity alone cannot tell "12% of 250" from "12% of 260". After the
//! similarity threshold, every hit must pass these guards; any one failing is a miss.
//!
//! The guards compare what changes an answer: numbers and versions, dates and
//! times, units and currencies, languages (natural and programming), negation (when
//! the other side says the negated word plainly), antonyms, the order of a relation
//! (around relation words, cause and effect, subject and object), the task asked
//! and the kind of question, and finally any content word that one side has and the
//! other lacks, after typos, spelling variants, inflections, fillers, question
//! frames, a synonym table and, given [`WordVectors`], words that mean the same are
//! accounted for. Content words left over always miss when only one slot changed
//! (everything around it equal) or when one is a name or a pronoun; in a rewording
//! a few common words may differ, more the higher the similarity. A wrong hit is
//! worse than a miss, so the guards err towards "different".

use std::collections::{BTreeMap, BTreeSet};

/// Why two requests are not the same question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Short machine-readable reason: number, datetime, unit, language, negation,
    /// antonym, direction, content.
    pub kind: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

/// All reasons a verdict can name, for stats.
pub const MISMATCH_KINDS: [&str; 8] = [
    "number",
    "datetime",
    "unit",
    "language",
    "negation",
    "antonym",
    "direction",
    "content",
];

const NUMBER_WORDS: &[(&str, &str)] = &[
    ("zero", "0"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
    ("eleven", "11"),
    ("twelve", "12"),
    ("thirteen", "13"),
    ("fourteen", "14"),
    ("fifteen", "15"),
    ("sixteen", "16"),
    ("seventeen", "17"),
    ("eighteen", "18"),
    ("nineteen", "19"),
    ("twenty", "20"),
    ("thirty", "30"),
    ("forty", "40"),
    ("fifty", "50"),
    ("sixty", "60"),
    ("seventy", "70"),
    ("eighty", "80"),
    ("ninety", "90"),
    ("hundred", "100"),
    ("thousand", "1000"),
    ("million", "1000000"),
    ("billion", "1000000000"),
    ("dozen", "12"),
    ("half", "0.5"),
    ("quarter", "0.25"),
    ("first", "1st"),
    ("second", "2nd"),
    ("third", "3rd"),
    ("fourth", "4th"),
    ("fifth", "5th"),
    ("squared", "^2"),
    ("cubed", "^3"),
    ("once", "1x"),
    ("twice", "2x"),
    ("double", "2x"),
    ("triple", "3x"),
    ("single", "1"),
    ("couple", "2"),
    ("pair", "2"),
    ("uno", "1"),
    ("dos", "2"),
    ("tres", "3"),
    ("eins", "1"),
    ("zwei", "2"),
    ("drei", "3"),
    ("deux", "2"),
    ("trois", "3"),
];

/// Number words that often say no quantity: an adverb ("without eating first",
/// "first thing Monday"), a kind of thing ("a key pair", "a single file"), a manner
/// ("charged twice"). A number from one of them decides only against a number of
/// the same kind on the other side (an ordinal, a multiple, a count); otherwise the
/// word stays a content word for the content guard.
const WEAK_NUMBER_WORDS: &[&str] = &[
    "first", "second", "third", "fourth", "fifth", "once", "twice", "double", "triple", "single",
    "couple", "pair",
];

/// Denominators of a fraction written in words ("three eighths" = 3/8).
const FRACTIONS: &[(&str, &str)] = &[
    ("halves", "2"),
    ("thirds", "3"),
    ("quarters", "4"),
    ("fourths", "4"),
    ("fifths", "5"),
    ("sixths", "6"),
    ("sevenths", "7"),
    ("eighths", "8"),
    ("ninths", "9"),
    ("tenths", "10"),
];

const DATETIME_WORDS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "mon",
    "tue",
    "tues",
    "wed",
    "thu",
    "thurs",
    "fri",
    "today",
    "tomorrow",
    "yesterday",
    "tonight",
    "morning",
    "afternoon",
    "evening",
    "noon",
    "midnight",
    "weekend",
    "weekday",
    "weekdays",
    "weekends",
    "weekly",
    "monthly",
    "yearly",
    "annual",
    "annually",
    "hourly",
    "quarterly",
    "am",
    "pm",
    "last",
    "next",
    "previous",
    "upcoming",
    "ago",
    "spring",
    "summer",
    "autumn",
    "winter",
    "christmas",
    "easter",
    "utc",
    "gmt",
    "pst",
    "cet",
    "hoy",
    "mañana",
    "ayer",
    "heute",
    "morgen",
    "gestern",
    "aujourd'hui",
    "demain",
];

/// Durations: compared only when a number is present ("3 days" vs "3 weeks");
/// without one they only frame a "how long" question.
const DURATIONS: &[(&str, &str)] = &[
    ("second", "second"),
    ("seconds", "second"),
    ("sec", "second"),
    ("secs", "second"),
    ("minute", "minute"),
    ("minutes", "minute"),
    ("min", "minute"),
    ("mins", "minute"),
    ("hour", "hour"),
    ("hours", "hour"),
    ("hr", "hour"),
    ("hrs", "hour"),
    ("day", "day"),
    ("days", "day"),
    ("daily", "day"),
    ("week", "week"),
    ("weeks", "week"),
    ("month", "month"),
    ("months", "month"),
    ("year", "year"),
    ("years", "year"),
    ("yr", "year"),
    ("yrs", "year"),
    ("decade", "decade"),
    ("decades", "decade"),
    ("century", "century"),
    ("night", "night"),
    ("nights", "night"),
];

const UNIT_WORDS: &[(&str, &str)] = &[
    ("km", "km"),
    ("kms", "km"),
    ("kilometer", "km"),
    ("kilometre", "km"),
    ("mile", "mile"),
    ("mi", "mile"),
    ("m", "m"),
    ("meter", "m"),
    ("metre", "m"),
    ("cm", "cm"),
    ("centimeter", "cm"),
    ("mm", "mm"),
    ("millimeter", "mm"),
    ("inch", "inch"),
    ("in.", "inch"),
    ("ft", "ft"),
    ("foot", "ft"),
    ("feet", "ft"),
    ("yard", "yard"),
    ("yd", "yard"),
    ("kg", "kg"),
    ("kilogram", "kg"),
    ("kilo", "kg"),
    ("g", "g"),
    ("gram", "g"),
    ("mg", "mg"),
    ("lb", "lb"),
    ("lbs", "lb"),
    ("pound", "lb"),
    ("oz", "oz"),
    ("ounce", "oz"),
    ("stone", "stone"),
    ("ton", "ton"),
    ("tonne", "tonne"),
    ("liter", "l"),
    ("litre", "l"),
    ("l", "l"),
    ("ml", "ml"),
    ("milliliter", "ml"),
    ("gallon", "gallon"),
    ("gal", "gallon"),
    ("quart", "quart"),
    ("pint", "pint"),
    ("cup", "cup"),
    ("tbsp", "tbsp"),
    ("tablespoon", "tbsp"),
    ("tsp", "tsp"),
    ("teaspoon", "tsp"),
    ("celsius", "celsius"),
    ("centigrade", "celsius"),
    ("°c", "celsius"),
    ("fahrenheit", "fahrenheit"),
    ("°f", "fahrenheit"),
    ("kelvin", "kelvin"),
    ("mph", "mph"),
    ("kph", "kmh"),
    ("km/h", "kmh"),
    ("kmh", "kmh"),
    ("knot", "knot"),
    ("b", "byte"),
    ("byte", "byte"),
    ("bit", "bit"),
    ("kilobyte", "kb"),
    ("kilobit", "kbit"),
    ("megabyte", "mb"),
    ("megabit", "mbit"),
    ("gigabyte", "gb"),
    ("gigabit", "gbit"),
    ("terabyte", "tb"),
    ("mebibyte", "mib"),
    ("gibibyte", "gib"),
    ("kbit", "kbit"),
    ("mbit", "mbit"),
    ("gbit", "gbit"),
    ("kb", "kb"),
    ("kib", "kib"),
    ("mb", "mb"),
    ("mib", "mib"),
    ("gb", "gb"),
    ("gib", "gib"),
    ("tb", "tb"),
    ("tib", "tib"),
    ("kbps", "kbps"),
    ("mbps", "mbps"),
    ("gbps", "gbps"),
    ("hz", "hz"),
    ("khz", "khz"),
    ("mhz", "mhz"),
    ("ghz", "ghz"),
    ("w", "watt"),
    ("watt", "watt"),
    ("kw", "kw"),
    ("kwh", "kwh"),
    ("v", "volt"),
    ("volt", "volt"),
    ("amp", "amp"),
    ("mah", "mah"),
    ("calorie", "kcal"),
    ("kcal", "kcal"),
    ("kj", "kj"),
    ("joule", "joule"),
    ("acre", "acre"),
    ("hectare", "hectare"),
    ("ms", "ms"),
    ("millisecond", "ms"),
    ("usd", "usd"),
    ("$", "usd"),
    ("dollar", "usd"),
    ("eur", "eur"),
    ("€", "eur"),
    ("euro", "eur"),
    ("gbp", "gbp"),
    ("£", "gbp"),
    ("sterling", "gbp"),
    ("jpy", "jpy"),
    ("¥", "jpy"),
    ("yen", "jpy"),
    ("cny", "cny"),
    ("yuan", "cny"),
    ("rmb", "cny"),
    ("inr", "inr"),
    ("₹", "inr"),
    ("rupee", "inr"),
    ("cad", "cad"),
    ("aud", "aud"),
    ("chf", "chf"),
    ("franc", "chf"),
    ("mxn", "mxn"),
    ("peso", "mxn"),
    ("btc", "btc"),
    ("bitcoin", "btc"),
    ("eth", "eth"),
    ("%", "percent"),
    ("percent", "percent"),
    ("percentage", "percent"),
    ("degree", "degree"),
    ("°", "degree"),
    ("radian", "radian"),
];

const LANGUAGES: &[&str] = &[
    "english",
    "spanish",
    "french",
    "german",
    "dutch",
    "danish",
    "swedish",
    "norwegian",
    "finnish",
    "icelandic",
    "italian",
    "portuguese",
    "brazilian",
    "russian",
    "ukrainian",
    "polish",
    "czech",
    "slovak",
    "hungarian",
    "romanian",
    "bulgarian",
    "serbian",
    "croatian",
    "greek",
    "turkish",
    "arabic",
    "hebrew",
    "persian",
    "farsi",
    "hindi",
    "bengali",
    "urdu",
    "punjabi",
    "tamil",
    "telugu",
    "marathi",
    "chinese",
    "mandarin",
    "cantonese",
    "japanese",
    "korean",
    "vietnamese",
    "thai",
    "indonesian",
    "malay",
    "tagalog",
    "filipino",
    "swahili",
    "catalan",
    "basque",
    "galician",
    "welsh",
    "irish",
    "latin",
    "esperanto",
    "british",
    "american",
    "australian",
    "canadian",
    "mexican",
    "castilian",
    "simplified",
    "traditional",
    "español",
    "inglés",
    "ingles",
    "francés",
    "alemán",
    "aleman",
    "italiano",
    "portugués",
    "deutsch",
    "englisch",
    "französisch",
    "spanisch",
    "italienisch",
    "français",
    "anglais",
    "allemand",
    "espagnol",
    "italien",
    "python",
    "py",
    "js",
    "javascript",
    "typescript",
    "java",
    "kotlin",
    "go",
    "golang",
    "rust",
    "c",
    "c++",
    "cpp",
    "c#",
    "csharp",
    "ruby",
    "php",
    "swift",
    "scala",
    "haskell",
    "perl",
    "r",
    "sql",
    "bash",
    "shell",
    "zsh",
    "powershell",
    "lua",
    "dart",
    "elixir",
    "erlang",
    "julia",
    "matlab",
    "fortran",
    "cobol",
    "clojure",
    "ocaml",
    "f#",
    "groovy",
    "objective-c",
    "assembly",
    "wasm",
    "html",
    "css",
    "json",
    "yaml",
    "toml",
    "xml",
    "csv",
    "markdown",
    "latex",
    "excel",
    "regex",
    "node",
    "nodejs",
    "react",
    "vue",
    "angular",
    "svelte",
    "django",
    "flask",
    "rails",
    "spring",
    "postgres",
    "postgresql",
    "mysql",
    "sqlite",
    "mongodb",
    "redis",
    "oracle",
    "mssql",
];

const NEGATIONS: &[&str] = &[
    "not",
    "no",
    "never",
    "without",
    "none",
    "nothing",
    "neither",
    "nor",
    "except",
    "excluding",
    "cannot",
    "unable",
    "can't",
    "cant",
    "don't",
    "dont",
    "doesn't",
    "doesnt",
    "didn't",
    "didnt",
    "won't",
    "wont",
    "isn't",
    "isnt",
    "aren't",
    "arent",
    "wasn't",
    "wasnt",
    "weren't",
    "shouldn't",
    "shouldnt",
    "wouldn't",
    "wouldnt",
    "couldn't",
    "couldnt",
    "mustn't",
    "haven't",
    "hasn't",
    "hadn't",
    "nobody",
    "nowhere",
    "non",
    "un",
    "dis",
    "nicht",
    "kein",
    "keine",
    "keinen",
    "ohne",
    "nie",
    "pas",
    "ne",
    "sans",
    "jamais",
    "sin",
    "nunca",
    "ni",
    "nada",
    "niente",
    "senza",
    "mai",
    "não",
    "nao",
    "sem",
    "outof",
];

/// Pairs whose members change an answer when one replaces the other.
const ANTONYMS: &[(&str, &str)] = &[
    ("enable", "disable"),
    ("upload", "download"),
    ("increase", "decrease"),
    ("increase", "reduce"),
    ("raise", "lower"),
    ("encrypt", "decrypt"),
    ("encode", "decode"),
    ("compress", "decompress"),
    ("zip", "unzip"),
    ("buy", "sell"),
    ("import", "export"),
    ("install", "uninstall"),
    ("add", "remove"),
    ("add", "delete"),
    ("add", "subtract"),
    ("include", "exclude"),
    ("open", "close"),
    ("start", "stop"),
    ("start", "end"),
    ("begin", "end"),
    ("min", "max"),
    ("minimum", "maximum"),
    ("cheap", "expensive"),
    ("cheapest", "expensive"),
    ("best", "worst"),
    ("before", "after"),
    ("above", "below"),
    ("more", "less"),
    ("more", "fewer"),
    ("higher", "lower"),
    ("high", "low"),
    ("highest", "lowest"),
    ("faster", "slower"),
    ("fast", "slow"),
    ("first", "last"),
    ("pro", "con"),
    ("advantage", "disadvantage"),
    ("benefit", "drawback"),
    ("benefit", "risk"),
    ("allow", "block"),
    ("allow", "deny"),
    ("accept", "reject"),
    ("approve", "deny"),
    ("approve", "reject"),
    ("lock", "unlock"),
    ("subscribe", "unsubscribe"),
    ("join", "leave"),
    ("hot", "cold"),
    ("warm", "cool"),
    ("inside", "outside"),
    ("input", "output"),
    ("push", "pull"),
    ("send", "receive"),
    ("login", "logout"),
    ("signin", "signout"),
    ("up", "down"),
    ("in", "out"),
    ("on", "off"),
    ("left", "right"),
    ("north", "south"),
    ("east", "west"),
    ("early", "late"),
    ("gain", "lose"),
    ("win", "lose"),
    ("profit", "loss"),
    ("plus", "minus"),
    ("multiply", "divide"),
    ("expand", "collapse"),
    ("connect", "disconnect"),
    ("mount", "unmount"),
    ("show", "hide"),
    ("visible", "hidden"),
    ("public", "private"),
    ("serialize", "deserialize"),
    ("positive", "negative"),
    ("true", "false"),
    ("success", "failure"),
    ("legal", "illegal"),
    ("safe", "unsafe"),
    ("safe", "dangerous"),
    ("easy", "hard"),
    ("easy", "difficult"),
    ("simple", "complex"),
    ("long", "short"),
    ("longest", "shortest"),
    ("big", "small"),
    ("large", "small"),
    ("largest", "smallest"),
    ("biggest", "smallest"),
    ("heavy", "light"),
    ("old", "new"),
    ("old", "young"),
    ("oldest", "newest"),
    ("male", "female"),
    ("man", "woman"),
    ("men", "women"),
    ("boy", "girl"),
    ("day", "night"),
    ("summer", "winter"),
    ("arrive", "depart"),
    ("arrival", "departure"),
    ("entry", "exit"),
    ("ascending", "descending"),
    ("asc", "desc"),
    ("least", "most"),
    ("under", "over"),
    ("underweight", "overweight"),
    ("gain", "loss"),
    ("win", "loss"),
    ("strong", "weak"),
    ("wet", "dry"),
    ("full", "empty"),
    ("light", "dark"),
    ("white", "black"),
    ("yes", "no"),
    ("always", "never"),
    ("all", "none"),
    ("everything", "nothing"),
    ("sync", "async"),
    ("synchronous", "asynchronous"),
    ("client", "server"),
    ("frontend", "backend"),
    ("read", "write"),
    ("encrypt", "hash"),
    ("upgrade", "downgrade"),
    ("import", "export"),
    ("inbound", "outbound"),
    ("incoming", "outgoing"),
    ("internal", "external"),
    ("horizontal", "vertical"),
    ("upper", "lower"),
    ("uppercase", "lowercase"),
    ("maximize", "minimize"),
    ("earn", "spend"),
    ("borrow", "lend"),
    ("debit", "credit"),
    ("deposit", "withdraw"),
    ("rent", "buy"),
    ("lease", "buy"),
    ("like", "dislike"),
    ("love", "hate"),
    ("agree", "disagree"),
    ("eat", "avoid"),
    ("include", "avoid"),
    ("keep", "avoid"),
    ("allow", "prevent"),
    ("hyperthyroidism", "hypothyroidism"),
    ("hypertension", "hypotension"),
    ("hyperglycemia", "hypoglycemia"),
    ("mutable", "immutable"),
    ("valid", "invalid"),
    ("more", "less"),
    ("cause", "cure"),
    ("cause", "prevent"),
    ("symptom", "cure"),
    ("import", "export"),
    ("forward", "backward"),
    ("next", "previous"),
    ("older", "newer"),
    ("newest", "oldest"),
    ("clockwise", "counterclockwise"),
    ("row", "column"),
    ("rows", "columns"),
    ("prefix", "suffix"),
    ("leading", "trailing"),
    ("head", "tail"),
    ("top", "bottom"),
    ("front", "back"),
    ("past", "future"),
    ("mac", "windows"),
    ("windows", "linux"),
    ("mac", "linux"),
    ("ios", "android"),
    ("iphone", "android"),
    // General antonyms (a second list, written apart from the pair sets).
    ("soft", "hard"),
    ("softer", "harder"),
    ("softest", "hardest"),
    ("thick", "thin"),
    ("thicker", "thinner"),
    ("wide", "narrow"),
    ("wider", "narrower"),
    ("bigger", "smaller"),
    ("larger", "smaller"),
    ("longer", "shorter"),
    ("tall", "short"),
    ("lighter", "darker"),
    ("hottest", "coldest"),
    ("strengths", "weaknesses"),
    ("deep", "shallow"),
    ("loud", "quiet"),
    ("rich", "poor"),
    ("easier", "harder"),
    ("good", "bad"),
    ("better", "worse"),
    ("right", "wrong"),
    ("truthy", "falsy"),
    ("sharp", "dull"),
    ("clean", "dirty"),
    ("tight", "loose"),
    ("introvert", "extrovert"),
    ("formal", "casual"),
    ("qualitative", "quantitative"),
    ("singular", "plural"),
    ("synonym", "antonym"),
    ("synonyms", "antonyms"),
    ("common", "rare"),
    ("temporary", "permanent"),
    ("manual", "automatic"),
    ("required", "optional"),
    ("domestic", "international"),
    ("earlier", "later"),
    ("earliest", "latest"),
    ("yesterday", "tomorrow"),
    ("beginner", "advanced"),
    ("senior", "junior"),
    ("major", "minor"),
    ("sharp", "flat"),
    ("even", "odd"),
    ("active", "passive"),
    ("acute", "chronic"),
    ("benign", "malignant"),
    ("systolic", "diastolic"),
    ("dominant", "recessive"),
    ("adults", "children"),
    ("sweet", "savory"),
    ("raw", "cooked"),
    ("crispy", "chewy"),
    ("crunchy", "smooth"),
    ("mild", "spicy"),
    ("lean", "fatty"),
    ("fine", "coarse"),
    ("moist", "dry"),
    ("fresh", "stale"),
    ("fresh", "frozen"),
    ("frozen", "thawed"),
    ("firm", "soft"),
    ("overripe", "underripe"),
    ("caffeinated", "decaffeinated"),
    ("inner", "outer"),
    ("interior", "exterior"),
    ("indoor", "outdoor"),
    ("indoors", "outdoors"),
    ("foreground", "background"),
    ("clockwise", "anticlockwise"),
    ("upstairs", "downstairs"),
    ("upstream", "downstream"),
    ("ceiling", "floor"),
    ("beginning", "end"),
    ("start", "finish"),
    ("morning", "evening"),
    ("weekday", "weekend"),
    ("nearest", "farthest"),
    ("nearsighted", "farsighted"),
    ("ascend", "descend"),
    ("many", "few"),
    ("maximized", "minimized"),
    ("majority", "minority"),
    ("surplus", "deficit"),
    ("double", "halve"),
    ("overrated", "underrated"),
    ("overvalued", "undervalued"),
    ("overpriced", "underpriced"),
    ("overbought", "oversold"),
    ("overestimate", "underestimate"),
    ("overestimated", "underestimated"),
    ("overpay", "underpay"),
    ("overpaid", "underpaid"),
    ("overcook", "undercook"),
    ("overcooked", "undercooked"),
    ("overactive", "underactive"),
    ("overfitting", "underfitting"),
    ("overflow", "underflow"),
    ("overwatering", "underwatering"),
    ("outperform", "underperform"),
    ("hyperthyroid", "hypothyroid"),
    ("hyperglycemic", "hypoglycemic"),
    ("hyperkalemia", "hypokalemia"),
    ("hypernatremia", "hyponatremia"),
    ("hyperthermia", "hypothermia"),
    ("tachycardia", "bradycardia"),
    ("macroeconomics", "microeconomics"),
    ("superclass", "subclass"),
    ("superset", "subset"),
    ("prenatal", "postnatal"),
    ("preoperative", "postoperative"),
    ("prepend", "append"),
    ("inpatient", "outpatient"),
    ("inflow", "outflow"),
    ("online", "offline"),
    ("uptime", "downtime"),
    ("upside", "downside"),
    ("upvote", "downvote"),
    ("upscaling", "downscaling"),
    ("endothermic", "exothermic"),
    ("intrinsic", "extrinsic"),
    ("implicit", "explicit"),
    ("homozygous", "heterozygous"),
    ("homogeneous", "heterogeneous"),
    ("sympathetic", "parasympathetic"),
    ("aerobic", "anaerobic"),
    ("symmetric", "asymmetric"),
    ("encrypts", "decrypts"),
    ("encrypting", "decrypting"),
    ("encrypted", "decrypted"),
    ("encryption", "decryption"),
    ("encoding", "decoding"),
    ("encoded", "decoded"),
    ("compressed", "decompressed"),
    ("compression", "decompression"),
    ("serialization", "deserialization"),
    ("enqueue", "dequeue"),
    ("enables", "disables"),
    ("enabling", "disabling"),
    ("enabled", "disabled"),
    ("activate", "deactivate"),
    ("activated", "deactivated"),
    ("select", "deselect"),
    ("attach", "detach"),
    ("attached", "detached"),
    ("allocate", "deallocate"),
    ("constructor", "destructor"),
    ("hydrate", "dehydrate"),
    ("hydrated", "dehydrated"),
    ("hydration", "dehydration"),
    ("humidifier", "dehumidifier"),
    ("uploads", "downloads"),
    ("uploading", "downloading"),
    ("uploaded", "downloaded"),
    ("upgraded", "downgraded"),
    ("importing", "exporting"),
    ("imported", "exported"),
    ("inhale", "exhale"),
    ("inhaling", "exhaling"),
    ("inhaled", "exhaled"),
    ("inhalation", "exhalation"),
    ("including", "excluding"),
    ("included", "excluded"),
    ("inclusive", "exclusive"),
    ("increasing", "decreasing"),
    ("increased", "decreased"),
    ("increment", "decrement"),
    ("inflate", "deflate"),
    ("inflated", "deflated"),
    ("inflation", "deflation"),
    ("appreciation", "depreciation"),
    ("accelerate", "decelerate"),
    ("accelerated", "decelerated"),
    ("acceleration", "deceleration"),
    ("promote", "demote"),
    ("promoted", "demoted"),
    ("promotion", "demotion"),
    ("hire", "fire"),
    ("hiring", "firing"),
    ("hired", "fired"),
    ("deposit", "withdrawal"),
    ("deposits", "withdrawals"),
    ("deposited", "withdrew"),
    ("credited", "debited"),
    ("creditor", "debtor"),
    ("lending", "borrowing"),
    ("lent", "borrowed"),
    ("lender", "borrower"),
    ("buying", "selling"),
    ("bought", "sold"),
    ("buyer", "seller"),
    ("wholesale", "retail"),
    ("save", "spend"),
    ("asset", "liability"),
    ("assets", "liabilities"),
    ("income", "expense"),
    ("gains", "losses"),
    ("gaining", "losing"),
    ("gained", "lost"),
    ("winning", "losing"),
    ("won", "lost"),
    ("victory", "defeat"),
    ("succeed", "fail"),
    ("succeeded", "failed"),
    ("pass", "fail"),
    ("passing", "failing"),
    ("passed", "failed"),
    ("accept", "decline"),
    ("accepted", "declined"),
    ("accepted", "rejected"),
    ("approved", "rejected"),
    ("allow", "forbid"),
    ("allowed", "forbidden"),
    ("allowed", "denied"),
    ("allowlist", "denylist"),
    ("whitelist", "blacklist"),
    ("permit", "prohibit"),
    ("permitted", "prohibited"),
    ("grant", "revoke"),
    ("acquire", "release"),
    ("guilty", "innocent"),
    ("plaintiff", "defendant"),
    ("offense", "defense"),
    ("opening", "closing"),
    ("open", "closed"),
    ("pause", "resume"),
    ("paused", "resumed"),
    ("freeze", "thaw"),
    ("freezing", "thawing"),
    ("melting", "freezing"),
    ("heat", "cool"),
    ("heating", "cooling"),
    ("warming", "cooling"),
    ("tighten", "loosen"),
    ("tightening", "loosening"),
    ("expand", "shrink"),
    ("expand", "contract"),
    ("expansion", "contraction"),
    ("grow", "shrink"),
    ("lengthen", "shorten"),
    ("widen", "narrow"),
    ("thicken", "thin"),
    ("strengthen", "weaken"),
    ("soften", "harden"),
    ("lighten", "darken"),
    ("raising", "lowering"),
    ("rise", "fall"),
    ("rising", "falling"),
    ("adding", "removing"),
    ("added", "removed"),
    ("addition", "subtraction"),
    ("multiplication", "division"),
    ("numerator", "denominator"),
    ("differentiate", "integrate"),
    ("union", "intersection"),
    ("create", "delete"),
    ("creating", "deleting"),
    ("created", "deleted"),
    ("push", "pop"),
    ("sent", "received"),
    ("sender", "receiver"),
    ("merge", "split"),
    ("undo", "redo"),
    ("arrivals", "departures"),
    ("takeoff", "landing"),
    ("enter", "exit"),
    ("origin", "destination"),
    ("source", "destination"),
    ("remember", "forget"),
    ("attract", "repel"),
    ("absorb", "emit"),
    ("absorption", "emission"),
    ("evaporate", "condense"),
    ("evaporation", "condensation"),
    ("converge", "diverge"),
    ("convergence", "divergence"),
    ("concentrate", "dilute"),
    ("concentrated", "diluted"),
    ("constrict", "dilate"),
    ("constricted", "dilated"),
    ("vasoconstriction", "vasodilation"),
    ("flexion", "extension"),
    ("pros", "cons"),
    ("employer", "employee"),
    ("landlord", "tenant"),
    ("producer", "consumer"),
    ("predator", "prey"),
    ("agonist", "antagonist"),
    ("stimulant", "depressant"),
    ("excitatory", "inhibitory"),
    ("anabolic", "catabolic"),
    ("bulking", "cutting"),
    ("constipation", "diarrhea"),
    ("relapse", "remission"),
    ("acidic", "alkaline"),
    ("anode", "cathode"),
    ("oxidation", "reduction"),
    ("hydrophilic", "hydrophobic"),
    ("convex", "concave"),
    ("dense", "sparse"),
    ("transparent", "opaque"),
    ("analog", "digital"),
    ("wired", "wireless"),
    ("stateful", "stateless"),
    ("static", "dynamic"),
    ("global", "local"),
    ("local", "remote"),
    ("absolute", "relative"),
    ("lazy", "eager"),
    ("greedy", "lazy"),
    ("compiled", "interpreted"),
    ("portrait", "landscape"),
    ("discrete", "continuous"),
    ("parallel", "serial"),
    ("metric", "imperial"),
    ("gross", "net"),
    ("bullish", "bearish"),
];

/// Words that carry no question of their own.
const FILLERS: &[&str] = &[
    "a",
    "an",
    "the",
    "this",
    "that",
    "these",
    "those",
    "it",
    "its",
    "it's",
    "i",
    "i'm",
    "im",
    "i've",
    "ive",
    "i'd",
    "me",
    "my",
    "mine",
    "we",
    "us",
    "our",
    "you",
    "your",
    "yours",
    "u",
    "ur",
    "he",
    "she",
    "they",
    "them",
    "their",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "am",
    "do",
    "does",
    "did",
    "doing",
    "done",
    "have",
    "has",
    "had",
    "having",
    "can",
    "could",
    "would",
    "should",
    "will",
    "shall",
    "may",
    "might",
    "must",
    "need",
    "needs",
    "want",
    "wanna",
    "gonna",
    "gotta",
    "like",
    "please",
    "pls",
    "plz",
    "thanks",
    "thank",
    "thx",
    "hi",
    "hello",
    "hey",
    "there",
    "ok",
    "okay",
    "so",
    "well",
    "just",
    "really",
    "actually",
    "basically",
    "quick",
    "quickly",
    "question",
    "wondering",
    "wonder",
    "curious",
    "know",
    "tell",
    "explain",
    "help",
    "helps",
    "anyone",
    "someone",
    "somebody",
    "possible",
    "able",
    "way",
    "ways",
    "what",
    "what's",
    "whats",
    "which",
    "who",
    "whom",
    "whose",
    "how",
    "how's",
    "why",
    "where",
    "when",
    "if",
    "whether",
    "of",
    "for",
    "in",
    "at",
    "by",
    "with",
    "about",
    "as",
    "and",
    "or",
    "but",
    "also",
    "too",
    "to",
    "from",
    "into",
    "onto",
    "any",
    "some",
    "get",
    "got",
    "getting",
    "go",
    "going",
    "make",
    "made",
    "exactly",
    "kindly",
    "let",
    "let's",
    "lets",
    "give",
    "show",
    "find",
    "out",
    "up",
    "mean",
    "means",
    "meaning",
    "say",
    "says",
    "said",
    "one",
    "thing",
    "things",
    "stuff",
    "kind",
    "sort",
    "type",
    "then",
    "than",
    "there's",
    "here",
    "again",
    "still",
    "yet",
    "already",
    "currently",
    "now",
    "via",
    "per",
    "each",
    "every",
    "much",
    "many",
    "very",
    "quite",
    "pretty",
    "bit",
    "lot",
    "lots",
    "try",
    "trying",
    "tried",
    "use",
    "using",
    "used",
    "guys",
    "folks",
    "team",
    "sir",
    "madam",
    "dear",
    "hmm",
    "um",
    "uh",
    "btw",
    "fyi",
    "asap",
    "cheers",
    "regards",
    "greetings",
    "does",
    "doesn't",
    "on",
    "off",
    "is",
    "el",
    "la",
    "los",
    "las",
    "un",
    "una",
    "de",
    "del",
    "que",
    "qué",
    "cómo",
    "como",
    "por",
    "para",
    "es",
    "en",
    "y",
    "o",
    "mi",
    "me",
    "der",
    "die",
    "das",
    "ein",
    "eine",
    "ist",
    "wie",
    "was",
    "ich",
    "mein",
    "meine",
    "und",
    "le",
    "les",
    "une",
    "des",
    "est",
    "je",
    "mon",
    "ma",
    "et",
    "comment",
    "quel",
    "quelle",
    "puis",
    "est-ce",
    "vous",
    "il",
    "ça",
    "faut",
    "tiene",
    "son",
    "cuál",
    "cual",
    "hay",
    "command",
    "steps",
    "step",
    "process",
    "method",
    "way",
    "reason",
    "syntax",
    "simply",
    "certain",
    "specific",
    "particular",
    "advance",
    "tip",
    "tips",
    "suggest",
    "recommend",
    "idea",
    "ideas",
    "common",
    "usual",
    "typical",
    "typically",
    "generally",
    "currently",
    "now",
    "today's",
    "nowadays",
    "anymore",
    "lately",
    "puedo",
    "quiero",
    "kann",
    "können",
    "bitte",
    "gibt",
    "es",
];

/// Words that mean the same thing for caching purposes; each maps to a canonical form.
const SYNONYMS: &[(&str, &str)] = &[
    ("change", "change"),
    ("reset", "change"),
    ("modify", "change"),
    ("update", "change"),
    ("alter", "change"),
    ("edit", "change"),
    ("forgot", "forgot"),
    ("forget", "forgot"),
    ("forgotten", "forgot"),
    ("recover", "change"),
    ("buy", "buy"),
    ("purchase", "buy"),
    ("price", "cost"),
    ("cost", "cost"),
    ("costs", "cost"),
    ("fee", "cost"),
    ("pricing", "cost"),
    ("expensive", "expensive"),
    ("fix", "fix"),
    ("repair", "fix"),
    ("solve", "fix"),
    ("resolve", "fix"),
    ("troubleshoot", "fix"),
    ("error", "problem"),
    ("issue", "problem"),
    ("problem", "problem"),
    ("trouble", "problem"),
    ("big", "big"),
    ("large", "big"),
    ("huge", "big"),
    ("small", "small"),
    ("little", "small"),
    ("tiny", "small"),
    ("begin", "start"),
    ("start", "start"),
    ("commence", "start"),
    ("finish", "end"),
    ("end", "end"),
    ("complete", "end"),
    ("quick", "fast"),
    ("fast", "fast"),
    ("rapid", "fast"),
    ("speedy", "fast"),
    ("car", "car"),
    ("automobile", "car"),
    ("vehicle", "car"),
    ("picture", "image"),
    ("photo", "image"),
    ("image", "image"),
    ("pic", "image"),
    ("movie", "film"),
    ("film", "film"),
    ("job", "job"),
    ("shop", "store"),
    ("store", "store"),
    ("hours", "hours"),
    ("return", "return"),
    ("refund", "refund"),
    ("delete", "delete"),
    ("erase", "delete"),
    ("cancel", "cancel"),
    ("terminate", "cancel"),
    ("quit", "cancel"),
    ("account", "account"),
    ("profile", "account"),
    ("signup", "register"),
    ("register", "register"),
    ("sign-up", "register"),
    ("enroll", "register"),
    ("login", "login"),
    ("log-in", "login"),
    ("signin", "login"),
    ("sign-in", "login"),
    ("logon", "login"),
    ("password", "password"),
    ("pwd", "password"),
    ("passcode", "password"),
    ("pass", "password"),
    ("email", "email"),
    ("e-mail", "email"),
    ("mail", "email"),
    ("phone", "phone"),
    ("telephone", "phone"),
    ("mobile", "phone"),
    ("cellphone", "phone"),
    ("cell", "phone"),
    ("ship", "ship"),
    ("shipping", "ship"),
    ("delivery", "ship"),
    ("deliver", "ship"),
    ("rid", "remove"),
    ("eliminate", "remove"),
    ("remove", "remove"),
    ("latest", "last"),
    ("recent", "last"),
    ("calculate", "compute"),
    ("compute", "compute"),
    ("exit", "quit"),
    ("quit", "quit"),
    ("leave", "quit"),
    ("daily", "day"),
    ("inhabitants", "population"),
    ("population", "population"),
    ("verify", "confirm"),
    ("confirm", "confirm"),
    ("decline", "reject"),
    ("reject", "reject"),
    ("contact", "contact"),
    ("multiply", "times"),
    ("times", "times"),
    ("shipment", "ship"),
    ("arrive", "ship"),
    ("take", "take"),
    ("long", "long"),
    ("duration", "long"),
    ("capital", "capital"),
    ("city", "city"),
    ("town", "city"),
    ("define", "definition"),
    ("definition", "definition"),
    ("meaning", "definition"),
    ("difference", "difference"),
    ("differences", "difference"),
    ("differ", "difference"),
    ("compare", "difference"),
    ("comparison", "difference"),
    ("vs", "difference"),
    ("versus", "difference"),
    ("example", "example"),
    ("sample", "example"),
    ("instance", "example"),
    ("create", "create"),
    ("make", "create"),
    ("generate", "create"),
    ("build", "create"),
    ("write", "write"),
    ("draft", "write"),
    ("compose", "write"),
    ("summarize", "summary"),
    ("summary", "summary"),
    ("summarise", "summary"),
    ("tl;dr", "summary"),
    ("tldr", "summary"),
    ("recap", "summary"),
    ("translate", "translate"),
    ("translation", "translate"),
    ("weather", "weather"),
    ("forecast", "weather"),
    ("doctor", "doctor"),
    ("physician", "doctor"),
    ("gp", "doctor"),
    ("near", "near"),
    ("nearby", "near"),
    ("nearest", "near"),
    ("close-by", "near"),
    ("closest", "near"),
    ("located", "where"),
    ("location", "where"),
    ("place", "where"),
    ("allowed", "allowed"),
    ("permitted", "allowed"),
    ("ok", "allowed"),
    ("support", "support"),
    ("assistance", "support"),
    ("service", "support"),
    ("agent", "support"),
    ("representative", "support"),
    ("usa", "us"),
    ("us", "us"),
    ("america", "us"),
    ("uk", "uk"),
    ("britain", "uk"),
    ("england", "uk"),
    ("app", "app"),
    ("application", "app"),
    ("software", "app"),
    // Strict synonyms and abbreviations (a second list, written apart from the pair sets).
    ("database", "database"),
    ("db", "database"),
    ("databases", "databases"),
    ("dbs", "databases"),
    ("repo", "repo"),
    ("repository", "repo"),
    ("repos", "repos"),
    ("repositories", "repos"),
    ("config", "config"),
    ("configuration", "config"),
    ("configs", "configs"),
    ("configurations", "configs"),
    ("information", "information"),
    ("info", "information"),
    ("parameter", "parameter"),
    ("param", "parameter"),
    ("argument", "argument"),
    ("arg", "argument"),
    ("package", "package"),
    ("pkg", "package"),
    ("packages", "packages"),
    ("pkgs", "packages"),
    ("regex", "regex"),
    ("regexp", "regex"),
    ("kubernetes", "kubernetes"),
    ("k8s", "kubernetes"),
    ("internationalization", "internationalization"),
    ("i18n", "internationalization"),
    ("internationalisation", "internationalization"),
    ("localization", "localization"),
    ("l10n", "localization"),
    ("localisation", "localization"),
    ("accessibility", "accessibility"),
    ("a11y", "accessibility"),
    ("dictionary", "dictionary"),
    ("dict", "dictionary"),
    ("dictionaries", "dictionaries"),
    ("dicts", "dictionaries"),
    ("boolean", "boolean"),
    ("bool", "boolean"),
    ("button", "button"),
    ("btn", "button"),
    ("text", "text"),
    ("txt", "text"),
    ("production", "production"),
    ("prod", "production"),
    ("postgres", "postgres"),
    ("postgresql", "postgres"),
    ("mongodb", "mongodb"),
    ("mongo", "mongodb"),
    ("sqlite", "sqlite"),
    ("sqlite3", "sqlite"),
    ("jpg", "jpg"),
    ("jpeg", "jpg"),
    ("tiff", "tiff"),
    ("tif", "tiff"),
    ("html", "html"),
    ("htm", "html"),
    ("yaml", "yaml"),
    ("yml", "yaml"),
    ("powerpoint", "powerpoint"),
    ("ppt", "powerpoint"),
    ("macos", "macos"),
    ("osx", "macos"),
    ("message", "message"),
    ("msg", "message"),
    ("messages", "messages"),
    ("msgs", "messages"),
    ("context", "context"),
    ("ctx", "context"),
    ("credentials", "credentials"),
    ("creds", "credentials"),
    ("dependencies", "dependencies"),
    ("deps", "dependencies"),
    ("pointer", "pointer"),
    ("ptr", "pointer"),
    ("length", "length"),
    ("len", "length"),
    ("sync", "sync"),
    ("synchronize", "sync"),
    ("synchronise", "sync"),
    ("control", "control"),
    ("ctrl", "control"),
    ("escape", "escape"),
    ("esc", "escape"),
    ("microphone", "microphone"),
    ("mic", "microphone"),
    ("preferences", "preferences"),
    ("prefs", "preferences"),
    ("minutes", "minutes"),
    ("mins", "minutes"),
    ("hrs", "hours"),
    ("seconds", "seconds"),
    ("secs", "seconds"),
    ("years", "years"),
    ("yrs", "years"),
    ("year", "year"),
    ("yr", "year"),
    ("week", "week"),
    ("wk", "week"),
    ("weeks", "weeks"),
    ("wks", "weeks"),
    ("percent", "percent"),
    ("pct", "percent"),
    ("approximately", "approximately"),
    ("approx", "approximately"),
    ("temperature", "temperature"),
    ("temp", "temperature"),
    ("celsius", "celsius"),
    ("centigrade", "celsius"),
    ("pounds", "pounds"),
    ("lbs", "pounds"),
    ("ounces", "ounces"),
    ("oz", "ounces"),
    ("feet", "feet"),
    ("ft", "feet"),
    ("kilograms", "kilograms"),
    ("kg", "kilograms"),
    ("kgs", "kilograms"),
    ("kilos", "kilograms"),
    ("kilometers", "kilometers"),
    ("km", "kilometers"),
    ("kilometres", "kilometers"),
    ("kms", "kilometers"),
    ("kilometer", "kilometer"),
    ("kilometre", "kilometer"),
    ("centimeters", "centimeters"),
    ("cm", "centimeters"),
    ("centimetres", "centimeters"),
    ("centimeter", "centimeter"),
    ("centimetre", "centimeter"),
    ("millimeters", "millimeters"),
    ("mm", "millimeters"),
    ("millimetres", "millimeters"),
    ("millimeter", "millimeter"),
    ("millimetre", "millimeter"),
    ("meter", "meter"),
    ("metre", "meter"),
    ("meters", "meters"),
    ("metres", "meters"),
    ("liter", "liter"),
    ("litre", "liter"),
    ("liters", "liters"),
    ("litres", "liters"),
    ("teaspoon", "teaspoon"),
    ("tsp", "teaspoon"),
    ("tablespoon", "tablespoon"),
    ("tbsp", "tablespoon"),
    ("micrograms", "micrograms"),
    ("mcg", "micrograms"),
    ("hertz", "hertz"),
    ("hz", "hertz"),
    ("calories", "calories"),
    ("cals", "calories"),
    ("carbohydrates", "carbohydrates"),
    ("carbs", "carbohydrates"),
    ("average", "average"),
    ("avg", "average"),
    ("quantity", "quantity"),
    ("qty", "quantity"),
    ("miscellaneous", "miscellaneous"),
    ("misc", "miscellaneous"),
    ("government", "government"),
    ("govt", "government"),
    ("department", "department"),
    ("dept", "department"),
    ("management", "management"),
    ("mgmt", "management"),
    ("advertisements", "advertisements"),
    ("ads", "advertisements"),
    ("color", "color"),
    ("colour", "color"),
    ("colors", "colors"),
    ("colours", "colors"),
    ("colored", "colored"),
    ("coloured", "colored"),
    ("favorite", "favorite"),
    ("favourite", "favorite"),
    ("fave", "favorite"),
    ("favorites", "favorites"),
    ("favourites", "favorites"),
    ("faves", "favorites"),
    ("flavor", "flavor"),
    ("flavour", "flavor"),
    ("flavors", "flavors"),
    ("flavours", "flavors"),
    ("behavior", "behavior"),
    ("behaviour", "behavior"),
    ("behaviors", "behaviors"),
    ("behaviours", "behaviors"),
    ("neighbor", "neighbor"),
    ("neighbour", "neighbor"),
    ("neighbors", "neighbors"),
    ("neighbours", "neighbors"),
    ("neighborhood", "neighborhood"),
    ("neighbourhood", "neighborhood"),
    ("humor", "humor"),
    ("humour", "humor"),
    ("odor", "odor"),
    ("odour", "odor"),
    ("tumor", "tumor"),
    ("tumour", "tumor"),
    ("savory", "savory"),
    ("savoury", "savory"),
    ("center", "center"),
    ("centre", "center"),
    ("centers", "centers"),
    ("centres", "centers"),
    ("theater", "theater"),
    ("theatre", "theater"),
    ("fiber", "fiber"),
    ("fibre", "fiber"),
    ("gray", "gray"),
    ("grey", "gray"),
    ("aluminum", "aluminum"),
    ("aluminium", "aluminum"),
    ("sulfur", "sulfur"),
    ("sulphur", "sulfur"),
    ("tire", "tire"),
    ("tyre", "tire"),
    ("tires", "tires"),
    ("tyres", "tires"),
    ("mold", "mold"),
    ("mould", "mold"),
    ("yogurt", "yogurt"),
    ("yoghurt", "yogurt"),
    ("donut", "donut"),
    ("doughnut", "donut"),
    ("donuts", "donuts"),
    ("doughnuts", "donuts"),
    ("omelet", "omelet"),
    ("omelette", "omelet"),
    ("pajamas", "pajamas"),
    ("pyjamas", "pajamas"),
    ("jewelry", "jewelry"),
    ("jewellery", "jewelry"),
    ("catalog", "catalog"),
    ("catalogue", "catalog"),
    ("artifact", "artifact"),
    ("artefact", "artifact"),
    ("license", "license"),
    ("licence", "license"),
    ("defense", "defense"),
    ("defence", "defense"),
    ("practice", "practice"),
    ("practise", "practice"),
    ("inquiry", "inquiry"),
    ("enquiry", "inquiry"),
    ("disk", "disk"),
    ("disc", "disk"),
    ("math", "math"),
    ("maths", "math"),
    ("mathematics", "math"),
    ("aging", "aging"),
    ("ageing", "aging"),
    ("traveling", "traveling"),
    ("travelling", "traveling"),
    ("traveled", "traveled"),
    ("travelled", "traveled"),
    ("traveler", "traveler"),
    ("traveller", "traveler"),
    ("canceled", "canceled"),
    ("cancelled", "canceled"),
    ("organize", "organize"),
    ("organise", "organize"),
    ("organization", "organization"),
    ("organisation", "organization"),
    ("realize", "realize"),
    ("realise", "realize"),
    ("recognize", "recognize"),
    ("recognise", "recognize"),
    ("apologize", "apologize"),
    ("apologise", "apologize"),
    ("analyze", "analyze"),
    ("analyse", "analyze"),
    ("optimize", "optimize"),
    ("optimise", "optimize"),
    ("optimization", "optimization"),
    ("optimisation", "optimization"),
    ("customize", "customize"),
    ("customise", "customize"),
    ("prioritize", "prioritize"),
    ("prioritise", "prioritize"),
    ("minimize", "minimize"),
    ("minimise", "minimize"),
    ("maximize", "maximize"),
    ("maximise", "maximize"),
    ("visualize", "visualize"),
    ("visualise", "visualize"),
    ("visualization", "visualization"),
    ("visualisation", "visualization"),
    ("normalize", "normalize"),
    ("normalise", "normalize"),
    ("authorization", "authorization"),
    ("authorisation", "authorization"),
    ("initialize", "initialize"),
    ("initialise", "initialize"),
    ("serialize", "serialize"),
    ("serialise", "serialize"),
    ("utilize", "utilize"),
    ("utilise", "utilize"),
    ("caramelize", "caramelize"),
    ("caramelise", "caramelize"),
    ("moisturizer", "moisturizer"),
    ("moisturiser", "moisturizer"),
    ("sanitizer", "sanitizer"),
    ("sanitiser", "sanitizer"),
    ("fertilizer", "fertilizer"),
    ("fertiliser", "fertilizer"),
    ("anemia", "anemia"),
    ("anaemia", "anemia"),
    ("anesthesia", "anesthesia"),
    ("anaesthesia", "anesthesia"),
    ("diarrhea", "diarrhea"),
    ("diarrhoea", "diarrhea"),
    ("estrogen", "estrogen"),
    ("oestrogen", "estrogen"),
    ("pediatric", "pediatric"),
    ("paediatric", "pediatric"),
    ("pediatrician", "pediatrician"),
    ("paediatrician", "pediatrician"),
    ("hemoglobin", "hemoglobin"),
    ("haemoglobin", "hemoglobin"),
    ("leukemia", "leukemia"),
    ("leukaemia", "leukemia"),
    ("esophagus", "esophagus"),
    ("oesophagus", "esophagus"),
    ("fetus", "fetus"),
    ("foetus", "fetus"),
    ("feces", "feces"),
    ("faeces", "feces"),
    ("celiac", "celiac"),
    ("coeliac", "celiac"),
    ("airplane", "airplane"),
    ("aeroplane", "airplane"),
    ("airplanes", "airplanes"),
    ("aeroplanes", "airplanes"),
    ("toward", "toward"),
    ("towards", "toward"),
    ("backward", "backward"),
    ("backwards", "backward"),
    ("among", "among"),
    ("amongst", "among"),
    ("while", "while"),
    ("whilst", "while"),
    ("learned", "learned"),
    ("learnt", "learned"),
    ("please", "please"),
    ("pls", "please"),
    ("plz", "please"),
    ("thanks", "thanks"),
    ("thx", "thanks"),
    ("hello", "hello"),
    ("hi", "hello"),
    ("hey", "hello"),
    ("okay", "allowed"),
    ("people", "people"),
    ("ppl", "people"),
    ("tomorrow", "tomorrow"),
    ("tmrw", "tomorrow"),
    ("christmas", "christmas"),
    ("xmas", "christmas"),
    ("birthday", "birthday"),
    ("bday", "birthday"),
    ("though", "though"),
    ("tho", "though"),
    ("through", "through"),
    ("thru", "through"),
    ("conversation", "conversation"),
    ("convo", "conversation"),
    ("introduction", "introduction"),
    ("intro", "introduction"),
    ("recommendations", "recommendations"),
    ("recs", "recommendations"),
    ("someone", "someone"),
    ("somebody", "someone"),
    ("anyone", "anyone"),
    ("anybody", "anyone"),
    ("everyone", "everyone"),
    ("everybody", "everyone"),
    ("maybe", "maybe"),
    ("perhaps", "maybe"),
    ("almost", "almost"),
    ("nearly", "almost"),
    ("often", "often"),
    ("frequently", "often"),
    ("usually", "usually"),
    ("typically", "usually"),
    ("noon", "noon"),
    ("midday", "noon"),
    ("annual", "annual"),
    ("yearly", "annual"),
    ("annually", "annual"),
    ("exam", "exam"),
    ("examination", "exam"),
    ("exams", "exams"),
    ("examinations", "exams"),
    ("lab", "lab"),
    ("laboratory", "lab"),
    ("labs", "labs"),
    ("laboratories", "labs"),
    ("university", "university"),
    ("uni", "university"),
    ("professor", "professor"),
    ("prof", "professor"),
    ("graduate", "graduate"),
    ("grad", "graduate"),
    ("undergraduate", "undergraduate"),
    ("undergrad", "undergraduate"),
    ("postgraduate", "postgraduate"),
    ("postgrad", "postgraduate"),
    ("statistics", "statistics"),
    ("stats", "statistics"),
    ("economics", "economics"),
    ("econ", "economics"),
    ("mom", "mom"),
    ("mother", "mom"),
    ("mum", "mom"),
    ("moms", "moms"),
    ("mothers", "moms"),
    ("mums", "moms"),
    ("dad", "dad"),
    ("father", "dad"),
    ("dads", "dads"),
    ("fathers", "dads"),
    ("grandma", "grandma"),
    ("grandmother", "grandma"),
    ("grandpa", "grandpa"),
    ("grandfather", "grandpa"),
    ("grandkids", "grandkids"),
    ("grandchildren", "grandkids"),
    ("kid", "kid"),
    ("child", "kid"),
    ("kids", "kids"),
    ("children", "kids"),
    ("teen", "teen"),
    ("teenager", "teen"),
    ("teens", "teens"),
    ("teenagers", "teens"),
    ("rabbit", "rabbit"),
    ("bunny", "rabbit"),
    ("rabbits", "rabbits"),
    ("bunnies", "rabbits"),
    ("puppy", "puppy"),
    ("pup", "puppy"),
    ("puppies", "puppies"),
    ("pups", "puppies"),
    ("hippo", "hippo"),
    ("hippopotamus", "hippo"),
    ("rhino", "rhino"),
    ("rhinoceros", "rhino"),
    ("chimp", "chimp"),
    ("chimpanzee", "chimp"),
    ("flu", "flu"),
    ("influenza", "flu"),
    ("chickenpox", "chickenpox"),
    ("varicella", "chickenpox"),
    ("acetaminophen", "acetaminophen"),
    ("paracetamol", "acetaminophen"),
    ("adrenaline", "adrenaline"),
    ("epinephrine", "adrenaline"),
    ("noradrenaline", "noradrenaline"),
    ("norepinephrine", "noradrenaline"),
    ("vomit", "vomit"),
    ("puke", "vomit"),
    ("vomiting", "vomiting"),
    ("puking", "vomiting"),
    ("nauseous", "nauseous"),
    ("nauseated", "nauseous"),
    ("pimple", "pimple"),
    ("zit", "pimple"),
    ("pimples", "pimples"),
    ("zits", "pimples"),
    ("urine", "urine"),
    ("pee", "urine"),
    ("poop", "poop"),
    ("poo", "poop"),
    ("medications", "medications"),
    ("meds", "medications"),
    ("hives", "hives"),
    ("urticaria", "hives"),
    ("myopia", "myopia"),
    ("nearsightedness", "myopia"),
    ("microbe", "microbe"),
    ("microorganism", "microbe"),
    ("microbes", "microbes"),
    ("microorganisms", "microbes"),
    ("reps", "reps"),
    ("repetitions", "reps"),
    ("biceps", "biceps"),
    ("bicep", "biceps"),
    ("cars", "cars"),
    ("automobiles", "cars"),
    ("motorcycle", "motorcycle"),
    ("motorbike", "motorcycle"),
    ("motorcycles", "motorcycles"),
    ("motorbikes", "motorcycles"),
    ("gasoline", "gasoline"),
    ("petrol", "gasoline"),
    ("windshield", "windshield"),
    ("windscreen", "windshield"),
    ("railway", "railway"),
    ("railroad", "railway"),
    ("taxi", "taxi"),
    ("cab", "taxi"),
    ("taxis", "taxis"),
    ("cabs", "taxis"),
    ("luggage", "luggage"),
    ("baggage", "luggage"),
    ("backpack", "backpack"),
    ("rucksack", "backpack"),
    ("apartment", "apartment"),
    ("flat", "apartment"),
    ("apartments", "apartments"),
    ("flats", "apartments"),
    ("fridge", "fridge"),
    ("refrigerator", "fridge"),
    ("fridges", "fridges"),
    ("refrigerators", "fridges"),
    ("couch", "couch"),
    ("sofa", "couch"),
    ("couches", "couches"),
    ("sofas", "couches"),
    ("tv", "tv"),
    ("television", "tv"),
    ("tvs", "tvs"),
    ("televisions", "tvs"),
    ("diaper", "diaper"),
    ("nappy", "diaper"),
    ("diapers", "diapers"),
    ("nappies", "diapers"),
    ("stroller", "stroller"),
    ("pushchair", "stroller"),
    ("stovetop", "stovetop"),
    ("cooktop", "stovetop"),
    ("hob", "stovetop"),
    ("photograph", "image"),
    ("photos", "photos"),
    ("photographs", "photos"),
    ("pictures", "pictures"),
    ("pics", "pictures"),
    ("zucchini", "zucchini"),
    ("courgette", "zucchini"),
    ("eggplant", "eggplant"),
    ("aubergine", "eggplant"),
    ("eggplants", "eggplants"),
    ("aubergines", "eggplants"),
    ("chickpea", "chickpea"),
    ("garbanzo", "chickpea"),
    ("chickpeas", "chickpeas"),
    ("garbanzos", "chickpeas"),
    ("ketchup", "ketchup"),
    ("catsup", "ketchup"),
    ("mayo", "mayo"),
    ("mayonnaise", "mayo"),
    ("vegetables", "vegetables"),
    ("veggies", "vegetables"),
    ("barbecue", "barbecue"),
    ("bbq", "barbecue"),
    ("barbeque", "barbecue"),
    ("chili", "chili"),
    ("chilli", "chili"),
    ("bitcoin", "bitcoin"),
    ("btc", "bitcoin"),
    ("ethereum", "ethereum"),
    ("eth", "ethereum"),
    ("paycheck", "paycheck"),
    ("paycheque", "paycheck"),
    ("pricey", "expensive"),
    ("costly", "expensive"),
    ("cheap", "cheap"),
    ("inexpensive", "cheap"),
    ("largest", "largest"),
    ("biggest", "largest"),
    ("larger", "larger"),
    ("bigger", "larger"),
    ("smallest", "smallest"),
    ("tiniest", "smallest"),
    ("starts", "starts"),
    ("begins", "starts"),
    ("started", "started"),
    ("began", "started"),
    ("starting", "starting"),
    ("beginning", "starting"),
    ("allow", "allow"),
    ("permit", "allow"),
    ("rephrase", "rephrase"),
    ("paraphrase", "rephrase"),
    ("reword", "rephrase"),
    ("police", "police"),
    ("cops", "police"),
    ("earthquake", "earthquake"),
    ("quake", "earthquake"),
    ("mumbai", "mumbai"),
    ("bombay", "mumbai"),
    ("kolkata", "kolkata"),
    ("calcutta", "kolkata"),
    ("bengaluru", "bengaluru"),
    ("bangalore", "bengaluru"),
    ("kyiv", "kyiv"),
    ("kiev", "kyiv"),
    ("myanmar", "myanmar"),
    ("burma", "myanmar"),
];

/// Short names of languages and databases, and the name they stand for.
const LANGUAGE_ALIASES: &[(&str, &str)] = &[
    ("js", "javascript"),
    ("ts", "typescript"),
    ("postgres", "postgresql"),
    ("psql", "postgresql"),
    ("py", "python"),
    ("golang", "go"),
    ("rb", "ruby"),
    ("cpp", "c++"),
    ("csharp", "c#"),
    ("objc", "objective-c"),
];

/// Words that frame a request rather than say what it is about ("the best way to",
/// "steps to", "I'd like to know", "could you show me").
const FRAMES: &[&str] = &[
    "way",
    "ways",
    "method",
    "methods",
    "approach",
    "process",
    "procedure",
    "steps",
    "step",
    "instructions",
    "guide",
    "tutorial",
    "advice",
    "tips",
    "tip",
    "suggestions",
    "suggestion",
    "options",
    "option",
    "possible",
    "able",
    "best",
    "good",
    "right",
    "proper",
    "properly",
    "ideal",
    "recommended",
    "typical",
    "typically",
    "usual",
    "usually",
    "normal",
    "normally",
    "common",
    "commonly",
    "generally",
    "general",
    "exactly",
    "actually",
    "basically",
    "really",
    "even",
    "anything",
    "something",
    "everything",
    "someone",
    "anyone",
    "thing",
    "things",
    "stuff",
    "tell",
    "explain",
    "show",
    "give",
    "provide",
    "share",
    "know",
    "learn",
    "understand",
    "figure",
    "find",
    "wondering",
    "curious",
    "want",
    "need",
    "like",
    "looking",
    "trying",
    "hoping",
    "please",
    "kindly",
    "thanks",
    "thank",
    "hi",
    "hello",
    "hey",
    "go",
    "about",
    "get",
    "do",
    "doing",
    "done",
    "can",
    "could",
    "would",
    "should",
    "will",
    "might",
    "may",
    "must",
    "let",
    "lets",
    "let's",
    "i'd",
    "i'll",
    "i'm",
    "you're",
    "what's",
    "how's",
    "there's",
    "here's",
    "that's",
    "it's",
    "ok",
    "okay",
    "quick",
    "quickly",
    "simply",
    "specific",
    "particular",
    "certain",
    "some",
    "any",
    "few",
    "couple",
    "several",
    "various",
    // "What makes X look Y" = "why is X Y"; "the concept of X", "the term X".
    "make",
    "makes",
    "making",
    "look",
    "looks",
    "appear",
    "appears",
    "seem",
    "seems",
    "concept",
    "term",
    "terms",
    "refer",
    "refers",
    "mean",
    "means",
    "meaning",
    "technique",
    "techniques",
    "amount",
    "consider",
    "considered",
    "count",
    "counts",
    "state",
    "distinction",
    "difference",
    "differ",
    "different",
    "offer",
    "available",
    "exist",
    "exists",
    "simple",
    "simply",
    "overall",
    "actual",
];

/// Pronouns: who does what to whom ("my brother paid his rent" / "I paid my rent").
const PRONOUNS: &[&str] = &[
    "his",
    "her",
    "hers",
    "him",
    "himself",
    "herself",
    "themselves",
    "myself",
    "yourself",
    "ourselves",
    "mine",
    "yours",
    "theirs",
    "ours",
];

/// Relation markers: with one of these present, the order of shared anchors matters.
const DIRECTION_MARKERS: &[&str] = &[
    "to", "from", "into", "than", "vs", "versus", "->", "→", "towards", "toward", "onto", "de",
    "nach", "von", "à", "zu", "per", "over", "under", "against", "before", "after", "by", "in",
    "en", "vom", "zum", "zur", "al", "del",
];

fn word_map(
    list: &[(&'static str, &'static str)],
) -> std::collections::HashMap<&'static str, &'static str> {
    list.iter().copied().collect()
}

struct Lexicon {
    /// Whole words of the embedding model's WordPiece vocabulary: real words, so two
    /// of them are never typos of each other.
    words: std::collections::HashSet<&'static str>,
    durations: std::collections::HashMap<&'static str, &'static str>,
    numbers: std::collections::HashMap<&'static str, &'static str>,
    datetime: std::collections::HashSet<&'static str>,
    units: std::collections::HashMap<&'static str, &'static str>,
    languages: std::collections::HashSet<&'static str>,
    negations: std::collections::HashSet<&'static str>,
    antonym_words: std::collections::HashSet<&'static str>,
    /// Each antonym's opposites.
    opposites: std::collections::HashMap<&'static str, Vec<&'static str>>,
    fillers: std::collections::HashSet<&'static str>,
    synonyms: std::collections::HashMap<&'static str, &'static str>,
    markers: std::collections::HashSet<&'static str>,
    /// Frequency rank of each whole word of the vocabulary (it is ordered by frequency).
    rank: std::collections::HashMap<&'static str, usize>,
    frames: std::collections::HashSet<&'static str>,
    pronouns: std::collections::HashSet<&'static str>,
    /// Each state word's (process, state) pairs (`data/states.txt`).
    states: std::collections::HashMap<String, Vec<(u16, u16)>>,
    /// Past forms of irregular verbs → the base form (`data/irregular_verbs.txt`).
    irregular: std::collections::HashMap<&'static str, &'static str>,
    /// Words after which "free" is no lack (`data/not_a_lack.txt`).
    not_a_lack: std::collections::HashSet<&'static str>,
    /// Verbs whose object "without" negates (`data/requirement_verbs.txt`).
    requirement_verbs: std::collections::HashSet<&'static str>,
    /// Verbs that keep their object away (`data/avoidance_verbs.txt`).
    avoidance_verbs: std::collections::HashSet<&'static str>,
}

/// Reads `data/states.txt`: one process per line, states split by `|`, the forms
/// of a state by `,`.
fn state_words(text: &'static str) -> std::collections::HashMap<String, Vec<(u16, u16)>> {
    let mut map: std::collections::HashMap<String, Vec<(u16, u16)>> =
        std::collections::HashMap::new();
    let processes = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    for (p, line) in processes.enumerate() {
        let states = line.split_once(':').map_or(line, |(_, s)| s);
        for (s, forms) in states.split('|').enumerate() {
            for form in forms.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                let entry = map.entry(form.to_string()).or_default();
                if !entry.contains(&(p as u16, s as u16)) {
                    entry.push((p as u16, s as u16));
                }
            }
        }
    }
    map
}

/// Lines of a word-list file, without comments and blank lines.
fn word_list(text: &'static str) -> std::collections::HashSet<&'static str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn lexicon() -> &'static Lexicon {
    static LEX: std::sync::OnceLock<Lexicon> = std::sync::OnceLock::new();
    LEX.get_or_init(|| Lexicon {
        words: include_str!("../../models/all-MiniLM-L6-v2/vocab.txt")
            .lines()
            .filter(|w| w.chars().count() > 2 && !w.starts_with("##") && !w.starts_with('['))
            .collect(),
        durations: word_map(DURATIONS),
        numbers: word_map(NUMBER_WORDS),
        datetime: DATETIME_WORDS.iter().copied().collect(),
        units: word_map(UNIT_WORDS),
        languages: LANGUAGES.iter().copied().collect(),
        negations: NEGATIONS.iter().copied().collect(),
        antonym_words: ANTONYMS.iter().flat_map(|(a, b)| [*a, *b]).collect(),
        opposites: {
            let mut m: std::collections::HashMap<&'static str, Vec<&'static str>> =
                std::collections::HashMap::new();
            for &(a, b) in ANTONYMS {
                m.entry(a).or_default().push(b);
                m.entry(b).or_default().push(a);
            }
            m
        },
        fillers: FILLERS.iter().copied().collect(),
        synonyms: word_map(SYNONYMS),
        markers: DIRECTION_MARKERS.iter().copied().collect(),
        rank: include_str!("../../models/all-MiniLM-L6-v2/vocab.txt")
            .lines()
            .filter(|w| !w.starts_with("##") && !w.starts_with('['))
            .enumerate()
            .map(|(i, w)| (w, i))
            .collect(),
        frames: FRAMES.iter().copied().collect(),
        pronouns: PRONOUNS.iter().copied().collect(),
        states: state_words(include_str!("data/states.txt")),
        irregular: include_str!("data/irregular_verbs.txt")
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .flat_map(|l| {
                let forms: Vec<&'static str> = l.split_whitespace().collect();
                let base = forms.last().copied().unwrap_or_default();
                forms.into_iter().map(move |p| (p, base))
            })
            .collect(),
        not_a_lack: word_list(include_str!("data/not_a_lack.txt")),
        requirement_verbs: word_list(include_str!("data/requirement_verbs.txt")),
        avoidance_verbs: word_list(include_str!("data/avoidance_verbs.txt")),
    })
}

/// A token: lowercase text, whether it contains a digit, and whether it was
/// capitalized in the middle of a sentence.
#[derive(Debug, Clone)]
struct Token {
    text: String,
    numeric: bool,
    /// Written with a capital after the first word, or in capitals ("US", "Alien").
    proper: bool,
    /// The first word after the end of a sentence or clause (`.`, `?`, `!`, `;`, `:`
    /// before a space, or the end of the text).
    boundary: bool,
    /// Joined to the next word by a hyphen ("un-", "non-").
    hyphen: bool,
}

/// Splits into words, numbers (with their inner `.`, `,`, `:`, `/`, `-`), currency
/// and percent symbols. Apostrophes stay inside words.
fn tokenize(s: &str) -> Vec<Token> {
    let chars: Vec<char> = s.chars().collect();
    // Written all in capitals ("HOW DO I EXIT VIM"): capitals mark no names.
    let shouting = !chars.iter().any(|c| c.is_lowercase());
    let mut out = Vec::new();
    let mut sentence_start = true;
    let mut boundary = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '.' | '?' | '!' | '¿' | '¡') {
            sentence_start = true;
        }
        // "Node.js" and "10:30" end nothing; "done. Next" and "json: turn" do.
        let ends_clause = matches!(c, '?' | '!' | ';' | '¿' | '¡')
            || (matches!(c, '.' | ':') && chars.get(i + 1).is_none_or(|n| n.is_whitespace()));
        if ends_clause && !out.is_empty() {
            boundary = true;
        }
        if c.is_alphanumeric() {
            let start = i;
            let mut numeric = false;
            while i < chars.len() {
                let ch = chars[i];
                let joins = matches!(ch, '.' | ',' | ':' | '/' | '-' | '\'' | '’')
                    && i + 1 < chars.len()
                    && chars[i + 1].is_alphanumeric()
                    && i > start;
                if ch.is_alphanumeric() || joins {
                    // `.,:/-` join only digits with digits; an apostrophe joins words.
                    if joins && matches!(ch, '.' | ',' | ':' | '/' | '-') {
                        let prev_digit = chars[i - 1].is_ascii_digit();
                        let next_digit = chars[i + 1].is_ascii_digit();
                        if !(prev_digit && next_digit) {
                            break;
                        }
                        // A comma joins thousands ("1,000"), not a list ("1,2,3").
                        let thousands = chars.len() >= i + 4
                            && chars[i + 1..i + 4].iter().all(char::is_ascii_digit)
                            && !chars.get(i + 4).is_some_and(char::is_ascii_digit);
                        if ch == ',' && !thousands {
                            break;
                        }
                    }
                    numeric |= ch.is_ascii_digit();
                    i += 1;
                } else {
                    break;
                }
            }
            // Keep a trailing "+" or "#" (c++, c#).
            while i < chars.len() && matches!(chars[i], '+' | '#') && i > start {
                i += 1;
            }
            let raw: String = chars[start..i].iter().collect();
            let mut text = raw.to_lowercase().replace('’', "'");
            if numeric {
                // 1,000 → 1000; keep 3.12, 10:30, 2024-05-01.
                let stripped = text.replace(',', "");
                if stripped.chars().all(|c| c.is_ascii_digit() || c == '.') {
                    text = stripped;
                }
                // Three or more parts: "50/30/20" is "50-30-20", "1/5/2024" is
                // "1-5-2024". (Two parts stay apart: "3/8" is no "3-8".)
                if text.chars().filter(|c| matches!(c, '/' | '-')).count() >= 2 {
                    text = text.replace('/', "-");
                }
            }
            // The first word of each sentence is capitalized anyway.
            let first_word = sentence_start;
            if !numeric {
                sentence_start = false;
            }
            let upper_initial = raw.chars().next().is_some_and(char::is_uppercase);
            let all_caps = raw.chars().count() >= 2 && raw.chars().all(|c| !c.is_lowercase());
            let proper =
                !numeric && !shouting && ((upper_initial && !first_word) || all_caps) && raw != "I";
            out.push(Token {
                text,
                numeric,
                proper,
                boundary: std::mem::take(&mut boundary),
                hyphen: chars.get(i) == Some(&'-')
                    && chars.get(i + 1).is_some_and(|c| c.is_alphabetic()),
            });
        } else if matches!(c, '$' | '€' | '£' | '¥' | '₹' | '%' | '°') {
            let mut text = c.to_string();
            if c == '°' && i + 1 < chars.len() && matches!(chars[i + 1], 'c' | 'C' | 'f' | 'F') {
                text.push(chars[i + 1].to_ascii_lowercase());
                i += 1;
            }
            out.push(Token {
                text,
                numeric: false,
                proper: false,
                boundary: std::mem::take(&mut boundary),
                hyphen: false,
            });
            i += 1;
        } else if c == '^' && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
            // A power: "x^2" is "x squared".
            let start = i;
            i += 1;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Token {
                text: chars[start..i].iter().collect(),
                numeric: true,
                proper: false,
                boundary: std::mem::take(&mut boundary),
                hyphen: false,
            });
        } else if c == '→' {
            out.push(Token {
                text: "→".into(),
                numeric: false,
                proper: false,
                boundary: std::mem::take(&mut boundary),
                hyphen: false,
            });
            i += 1;
        } else if c == '-' && i + 1 < chars.len() && chars[i + 1] == '>' {
            out.push(Token {
                text: "->".into(),
                numeric: false,
                proper: false,
                boundary: std::mem::take(&mut boundary),
                hyphen: false,
            });
            i += 2;
        } else {
            i += 1;
        }
    }
    out
}

/// Crude English stemming, enough to match inflections of the same word.
fn stem(w: &str) -> String {
    let w = w.trim_end_matches("'s").trim_end_matches('\'');
    if w.ends_with("ss") || w.ends_with("us") || w.ends_with("is") {
        return w.to_string();
    }
    // Plural -s is kept: "Alien" / "Aliens", "drummer" / "drummers", "HTTP" / "HTTPS"
    // can be different questions.
    for suf in [
        "ations", "ation", "ingly", "ings", "ing", "edly", "ied", "ed", "ly",
    ] {
        if let Some(base) = w.strip_suffix(suf) {
            let min = if suf == "s" { 3 } else { 4 };
            if base.chars().count() >= min {
                return match suf {
                    "ied" => format!("{base}y"),
                    _ => undouble(base.trim_end_matches('e')),
                };
            }
        }
    }
    if w.chars().count() >= 5 {
        return w.trim_end_matches('e').to_string();
    }
    w.to_string()
}

/// "committ" → "commit", "runn" → "run".
fn undouble(w: &str) -> String {
    let c: Vec<char> = w.chars().collect();
    let n = c.len();
    if n >= 4 && c[n - 1] == c[n - 2] && !matches!(c[n - 1], 'l' | 's' | 'z' | 'e' | 'o') {
        return c[..n - 1].iter().collect();
    }
    w.to_string()
}

fn canonical(w: &str) -> String {
    let lex = lexicon();
    // "taught" is "teach".
    let w = lex.irregular.get(w).copied().unwrap_or(w);
    if let Some(s) = lex.synonyms.get(w) {
        return (*s).to_string();
    }
    let st = stem(w);
    if let Some(s) = lex.synonyms.get(st.as_str()) {
        return (*s).to_string();
    }
    st
}

/// Prefixes that flip a word's meaning (hyperthyroidism / hypothyroidism).
const OPPOSITE_PREFIXES: &[(&str, &str)] = &[
    ("hyper", "hypo"),
    ("over", "under"),
    ("pre", "post"),
    ("in", "ex"),
    ("up", "down"),
    ("im", "ex"),
    ("inter", "intra"),
    ("micro", "macro"),
    ("max", "min"),
    ("de", "en"),
];

/// A likely typo of each other: close in spelling, same first letter, and not two
/// real words.
fn typo_of(a: &str, b: &str) -> bool {
    let (la, lb) = (a.chars().count(), b.chars().count());
    if la < 4 || lb < 4 || a.chars().next() != b.chars().next() {
        return false;
    }
    let lex = lexicon();
    if lex.words.contains(a) && lex.words.contains(b) {
        return false;
    }
    // "win10" / "win11", "h264" / "h265": another model, not a typo.
    if a.chars().chain(b.chars()).any(|c| c.is_ascii_digit()) {
        return false;
    }
    if OPPOSITE_PREFIXES.iter().any(|(p, q)| {
        (a.starts_with(p) && b.starts_with(q)) || (a.starts_with(q) && b.starts_with(p))
    }) {
        return false;
    }
    // "drummer" / "drummers": one or several, judged as a number change.
    if singular(a) == b || singular(b) == a {
        return false;
    }
    let d = strsim::osa_distance(a, b);
    let limit = if la.min(lb) >= 8 { 2 } else { 1 };
    d <= limit
}

#[derive(Debug, Clone, PartialEq)]
enum Marked {
    Word(String),
    Marker(String),
    /// The end of a sentence or clause: no relation reaches across it.
    Boundary,
}

#[derive(Debug, Default)]
struct Features {
    numbers: BTreeMap<String, usize>,
    datetime: BTreeSet<String>,
    units: BTreeSet<String>,
    languages: BTreeSet<String>,
    durations: BTreeSet<String>,
    /// Durations used as a rate or a specific period ("per month", "next week").
    rates: BTreeSet<String>,
    negations: usize,
    /// What each negation negates: the first words after it in its clause (up to
    /// [`NEGATION_SCOPE`]), past auxiliaries and determiners, in canonical form
    /// ("without paying a fee" negates paying and fee).
    negated: Vec<Vec<String>>,
    /// The first negated word of each negation as written (for word vectors).
    negated_raw: Vec<String>,
    /// Words an avoidance verb governs ("avoid roaming fees"), in negated form.
    avoided: BTreeSet<String>,
    /// Every word of the request in canonical form (and singular), for asking
    /// whether the other side says a negated word plainly.
    words: BTreeSet<String>,
    /// Programming languages the request implies by its tools ("pip" → Python).
    implied_languages: BTreeSet<String>,
    /// What the request's opening question word asks for ("who" → a person).
    question: Option<&'static str>,
    /// Numbers that came from a weak number word: (number, word as written).
    weak: Vec<(String, String)>,
    antonym_words: BTreeSet<String>,
    /// Content words, in order of appearance: (canonical form, as written).
    content: Vec<(String, String)>,
    markers: BTreeSet<String>,
    /// The sequence with relation words kept in place (`None` for other words dropped).
    marked: Vec<Marked>,
    /// Anchors (numbers, units, languages, datetime, content) in order.
    sequence: Vec<String>,
    /// Content words written as names (capitalized mid-sentence or in capitals).
    proper: BTreeSet<String>,
    /// The states of a process the request asks about: (process, state).
    states: BTreeSet<(u16, u16)>,
}

/// Two-word phrases that are one word elsewhere ("log in" / "login").
const COMPOUNDS: &[(&str, &str, &str)] = &[
    ("log", "in", "login"),
    ("log", "on", "login"),
    ("sign", "in", "login"),
    ("log", "out", "logout"),
    ("log", "off", "logout"),
    ("sign", "out", "logout"),
    ("sign", "up", "signup"),
    ("set", "up", "setup"),
    ("check", "out", "checkout"),
    ("checked", "in", "checkedin"),
    ("e", "mail", "email"),
    ("turn", "on", "enable"),
    ("switch", "on", "enable"),
    ("wi", "fi", "wifi"),
    ("over", "heating", "overheating"),
    ("jump", "start", "jumpstart"),
    ("turn", "off", "disable"),
    ("switch", "off", "disable"),
    ("web", "site", "website"),
    ("user", "name", "username"),
    ("pass", "word", "password"),
    ("back", "up", "backup"),
    ("work", "out", "workout"),
    ("add", "up", "sum"),
    ("out", "of", "outof"),
    ("in", "stock", "instock"),
    ("for", "loop", "forloop"),
    ("sign", "on", "login"),
    ("two", "factor", "2fa"),
    ("time", "zone", "timezone"),
];

fn join_compounds(tokens: Vec<Token>) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    for t in tokens {
        if let Some(prev) = out.last_mut() {
            if let Some((_, _, joined)) = COMPOUNDS
                .iter()
                .find(|(a, b, _)| prev.text == *a && t.text == *b)
            {
                prev.text = (*joined).to_string();
                continue;
            }
        }
        out.push(t);
    }
    for t in &mut out {
        if let Some((_, _, joined)) = COMPOUNDS.iter().find(|(a, b, _)| {
            // "login" or "log-in", compared without building either.
            t.text
                .strip_prefix(a)
                .is_some_and(|rest| rest == *b || rest.strip_prefix('-').is_some_and(|r| r == *b))
        }) {
            t.text = (*joined).to_string();
        }
    }
    out
}

fn features(s: &str) -> Features {
    let lex = lexicon();
    let mut f = Features::default();
    let mut prev = String::new();
    // The previous token was a number (for "three eighths").
    let mut number_last = false;
    let tokens = join_compounds(tokenize(s));
    // A word read with the one before it: "two times" is "twice", "40 years old" is
    // an age.
    let mut skip_next = false;
    // "non-www", "un-install": a negating prefix written apart, read as one word
    // with the next (so "www to non-www" / "non-www to www" is a relation swapped).
    let mut prefix: Option<String> = None;
    // "free of charge": "of" and "charge" both read with "free".
    let mut skip_after_next = false;
    for (k, t) in tokens.iter().enumerate() {
        if std::mem::take(&mut skip_next) {
            skip_next = std::mem::take(&mut skip_after_next);
            continue;
        }
        let next = tokens.get(k + 1).map_or("", |n| n.text.as_str());
        let this = match prefix.take() {
            Some(p) => format!("{p}{}", t.text),
            None => t.text.clone(),
        };
        let joined = this != t.text;
        let w = this.as_str();
        let last = std::mem::replace(&mut prev, this.clone());
        let prev_word = last;
        if t.boundary && !f.marked.is_empty() {
            f.marked.push(Marked::Boundary);
        }
        if lex.markers.contains(w) {
            // "from the host into a container" / "from a container to the host": one
            // relation word for a motion towards.
            let m = match w {
                "into" | "onto" | "towards" | "toward" => "to",
                _ => w,
            };
            f.markers.insert(m.to_string());
            f.marked.push(Marked::Marker(m.to_string()));
        } else if let Some(m) = CAUSAL
            .iter()
            .find(|(v, _)| *v == w)
            .map(|(_, m)| *m)
            .filter(|_| next != "by")
        {
            // "does inflation cause rising rates" / "do rising rates cause inflation":
            // cause and effect swapped. (The passive "caused by" reads backwards, so
            // it marks nothing.)
            f.marked.push(Marked::Marker(m.to_string()));
        }
        if (k == 0 || t.boundary) && f.question.is_none() {
            f.question = question_kind(w, next);
        }
        if t.numeric && identifier(w) {
            // "2FA", "x86", "mp3", "h264": a name, not a quantity. Compared as written.
            f.marked.push(Marked::Word(w.to_string()));
            f.sequence.push(w.to_string());
            f.content.push((w.to_string(), w.to_string()));
            f.proper.insert(w.to_string());
            continue;
        }
        // "three eighths" is 3/8.
        if let Some(d) = FRACTIONS.iter().find(|(p, _)| *p == w).map(|(_, d)| *d) {
            let whole = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit());
            if let Some(n) = f
                .sequence
                .last()
                .filter(|n| whole(n) && number_last)
                .cloned()
            {
                if let Some(c) = f.numbers.get_mut(&n) {
                    *c -= 1;
                    if *c == 0 {
                        f.numbers.remove(&n);
                    }
                }
                f.sequence.pop();
                f.marked.pop();
                let v = format!("{n}/{d}");
                *f.numbers.entry(v.clone()).or_default() += 1;
                f.marked.push(Marked::Word(v.clone()));
                f.sequence.push(v);
                number_last = true;
                continue;
            }
        }
        number_last = false;
        // "combine them into one": a pronoun closing its clause, not a count.
        if w == "one" && (prev_word == "into" || tokens.get(k + 1).is_none_or(|n| n.boundary)) {
            continue;
        }
        if next == "times" && (t.numeric || lex.numbers.contains_key(w)) {
            let n = lex.numbers.get(w).map_or(w, |n| *n);
            let v = format!("{}x", n.trim_end_matches('x'));
            *f.numbers.entry(v.clone()).or_default() += 1;
            f.marked.push(Marked::Word(v.clone()));
            f.sequence.push(v);
            skip_next = true;
            continue;
        }
        if t.numeric {
            *f.numbers.entry(w.to_string()).or_default() += 1;
            {
                let v = w.to_string();
                f.marked.push(Marked::Word(v.clone()));
                f.sequence.push(v);
            }
            number_last = true;
            continue;
        }
        if let Some(n) = lex.numbers.get(w) {
            *f.numbers.entry((*n).to_string()).or_default() += 1;
            if WEAK_NUMBER_WORDS.contains(&w) {
                f.weak.push(((*n).to_string(), w.to_string()));
            }
            {
                let v = (*n).to_string();
                f.marked.push(Marked::Word(v.clone()));
                f.sequence.push(v);
            }
            number_last = true;
            continue;
        }
        let stemmed = stem(w);
        // "gluten-free", "sugar free", "free of nuts", "seedless": a lack of what they
        // name, read as its negation, so that "Is this gluten free?" / "Does this
        // contain gluten?" differ like "not" would make them.
        if w == "free" {
            let of_what = (next == "of")
                .then(|| {
                    tokens[k + 2..]
                        .iter()
                        .take_while(|n| !n.boundary)
                        .map(|n| n.text.as_str())
                        .find(|n| !NEGATION_SKIP.contains(n))
                })
                .flatten();
            // "free of nuts" lacks nuts; "free of charge" lacks a charge.
            if let Some(n) = of_what {
                f.negations += 1;
                // Free of charge lacks any price, whichever word the other side uses.
                let scope = if matches!(n, "charge" | "cost" | "costs" | "fee" | "fees") {
                    ["charge", "cost", "fee", "pay", "price"]
                        .map(negated_form)
                        .to_vec()
                } else {
                    vec![negated_form(n)]
                };
                f.negated.push(scope);
                f.negated_raw.push(n.to_string());
                skip_next = true;
                continue;
            }
            let named = f.content.last().is_some_and(|(_, raw)| *raw == prev_word)
                && !lex.not_a_lack.contains(prev_word.as_str());
            if named {
                f.negations += 1;
                f.negated.push(vec![negated_form(&prev_word)]);
                f.negated_raw.push(prev_word.clone());
                continue;
            }
        }
        // The "-less" or "non" word stays a word of its own ("endless" ≈ "infinite").
        if let Some(base) = lacking(w).filter(|_| !joined) {
            f.negations += 1;
            f.negated.push(vec![negated_form(base)]);
            f.negated_raw.push(base.to_string());
        }
        if negation(w, next, t.hyphen) {
            // A negation that negates nothing in its clause ("…, or not?") is a tag.
            let mut clause = tokens[k + 1..]
                .iter()
                .take_while(|n| !n.boundary)
                .map(|n| n.text.as_str())
                .filter(|n| !NEGATION_SKIP.contains(n));
            // What it negates: the first word after it ("not working"), and after
            // "without" and a verb of giving or paying, that verb's object too
            // ("without paying a fee").
            if let Some(raw) = clause.next() {
                let mut scope = vec![negated_form(raw)];
                if w == "without" && lex.requirement_verbs.contains(raw) {
                    scope.extend(
                        clause
                            .filter(|n| !lex.fillers.contains(*n))
                            .take(2)
                            .map(negated_form),
                    );
                }
                f.negations += 1;
                f.negated.push(scope);
                f.negated_raw.push(raw.to_string());
            }
            if t.hyphen && matches!(w, "un" | "dis" | "non") {
                prefix = Some(w.to_string());
            }
            continue;
        }
        // "40-year-old", "3 years old": an age, not a period of time.
        if next == "old" && lex.durations.contains_key(w) {
            skip_next = true;
            continue;
        }
        // "daily", "per month", "every week": a rate.
        if let Some(d) = RATE_WORDS.iter().find(|(r, _)| *r == w).map(|(_, d)| *d) {
            f.rates.insert(d.to_string());
            f.durations.insert(d.to_string());
            continue;
        }
        // "the most recent commit" is the last one.
        if w == "most" && matches!(next, "recent" | "recently") {
            continue;
        }
        // "last" names a time only before one ("last week", "last Monday"); "my
        // last commit" is the most recent one, "make it last" a verb.
        if w == "last" && !lex.datetime.contains(next) && !lex.durations.contains_key(next) {
            let c = canonical(w);
            f.marked.push(Marked::Word(c.clone()));
            f.sequence.push(c.clone());
            f.content.push((c, w.to_string()));
            continue;
        }
        // "in the fall" is autumn; "fall asleep" is not.
        if matches!(w, "fall" | "autumn")
            && (w == "autumn"
                || next != "of"
                    && matches!(
                        prev_word.as_str(),
                        "the" | "this" | "next" | "of" | "during" | "every" | "early" | "late"
                    ))
        {
            f.datetime.insert("autumn".to_string());
            f.marked.push(Marked::Word("autumn".to_string()));
            f.sequence.push("autumn".to_string());
            continue;
        }
        if let Some(d) = lex.durations.get(w) {
            if matches!(
                prev_word.as_str(),
                "per" | "every" | "each" | "a" | "an" | "one" | "this" | "next" | "last"
            ) {
                f.rates.insert((*d).to_string());
            }
            f.durations.insert((*d).to_string());
            continue;
        }
        // "I am" is no time of day; "9 am" is.
        let clock_word_alone = matches!(w, "am" | "pm")
            && !prev_word.chars().next().is_some_and(|c| c.is_ascii_digit());
        if lex.datetime.contains(w) && !clock_word_alone {
            f.datetime.insert(w.to_string());
            {
                let v = w.to_string();
                f.marked.push(Marked::Word(v.clone()));
                f.sequence.push(v);
            }
            continue;
        }
        let one = singular(w);
        let after_number = number_last_token(&tokens, k);
        if let Some(u) = lex
            .units
            .get(w)
            .or_else(|| lex.units.get(stemmed.as_str()))
            .or_else(|| lex.units.get(one.as_str()))
            .or_else(|| {
                w.strip_suffix('s')
                    .filter(|b| b.chars().count() >= 4)
                    .and_then(|b| lex.units.get(b))
            })
            .filter(|_| after_number || !AMBIGUOUS_UNITS.contains(&w))
        {
            f.units.insert((*u).to_string());
            {
                let v = (*u).to_string();
                f.marked.push(Marked::Word(v.clone()));
                f.sequence.push(v);
            }
            continue;
        }
        if w == "js" && prev_word == "node" {
            // "Node.js" is Node.
            continue;
        }
        // "go to Iceland" is a verb; "in Go", "Go code" the language.
        let go_verb = w == "go"
            && !t.proper
            && !matches!(prev_word.as_str(), "in" | "using" | "with" | "golang")
            && !matches!(
                next,
                "code"
                    | "program"
                    | "programs"
                    | "module"
                    | "modules"
                    | "routine"
                    | "routines"
                    | "compiler"
                    | "struct"
                    | "structs"
                    | "lang"
            );
        // "American" is a nationality; "American English" a language.
        let nationality = matches!(w, "american" | "british" | "australian" | "canadian")
            && !matches!(next, "english" | "spelling" | "sign");
        // "what r the rules", "r u able to": texting for "are", not the R language.
        let texting_are = w == "r"
            && !t.proper
            && (matches!(
                next,
                "u" | "you" | "the" | "there" | "we" | "they" | "these" | "those"
            ) || matches!(
                prev_word.as_str(),
                "what"
                    | "how"
                    | "where"
                    | "who"
                    | "why"
                    | "when"
                    | "which"
                    | "there"
                    | "u"
                    | "you"
                    | "we"
                    | "they"
            ));
        // Texting shorthand for filler words: "r" (are), "u" (you), "w/" (with).
        if texting_are || matches!(w, "u" | "ur") || (w == "w" && !after_number) {
            continue;
        }
        if lex.languages.contains(w) && !go_verb && !nationality {
            // One name per language: "JS" / "JavaScript", "Postgres" / "PostgreSQL".
            let w = LANGUAGE_ALIASES
                .iter()
                .find(|(alias, _)| *alias == w)
                .map_or(w, |(_, name)| *name);
            f.languages.insert(w.to_string());
            {
                let v = w.to_string();
                f.marked.push(Marked::Word(v.clone()));
                f.sequence.push(v);
            }
            continue;
        }
        if lex.antonym_words.contains(w) {
            f.antonym_words.insert(w.to_string());
        } else if lex.antonym_words.contains(stemmed.as_str()) {
            f.antonym_words.insert(stemmed.clone());
        }
        // "I've", "they're", "we'll": a pronoun with a verb attached.
        if w.split_once('\'').is_some_and(|(p, _)| {
            matches!(
                p,
                "i" | "you"
                    | "we"
                    | "they"
                    | "he"
                    | "she"
                    | "it"
                    | "that"
                    | "there"
                    | "who"
                    | "what"
            )
        }) {
            continue;
        }
        if t.proper && !lex.languages.contains(w) {
            // Names stay exactly as written: no filler, stem or synonym applies.
            {
                let v = w.to_string();
                f.marked.push(Marked::Word(v.clone()));
                f.sequence.push(v);
            }
            f.content.push((w.to_string(), w.to_string()));
            f.proper.insert(w.to_string());
            continue;
        }
        // "when's", "where's", "how's": a filler with "is" attached.
        if lex.fillers.contains(w)
            || w.strip_suffix("'s")
                .is_some_and(|b| lex.fillers.contains(b))
        {
            continue;
        }
        let c = canonical(w);
        {
            let v = c.clone();
            f.marked.push(Marked::Word(v.clone()));
            f.sequence.push(v);
        }
        f.content.push((c, w.to_string()));
    }
    for (k, t) in tokens.iter().enumerate() {
        if lex.avoidance_verbs.contains(t.text.as_str()) {
            let governed = tokens[k + 1..]
                .iter()
                .take_while(|n| !n.boundary)
                .map(|n| n.text.as_str())
                .filter(|n| !NEGATION_SKIP.contains(n) && !lex.fillers.contains(*n))
                .take(2)
                .map(negated_form);
            f.avoided.extend(governed);
        }
        // A negated state ("hasn't paid") is no claim that the process is in it.
        let negated = || {
            let form = negated_form(&t.text);
            f.negated.iter().any(|scope| scope.contains(&form))
        };
        if let Some(states) = lex.states.get(t.text.as_str()).filter(|_| !negated()) {
            f.states.extend(states.iter().copied());
        }
        let c = canonical(&t.text);
        f.words.insert(lemma(&singular(&c)));
        f.words.insert(c);
        if let Some((_, l)) = IMPLIED_LANGUAGES.iter().find(|(w, _)| *w == t.text) {
            f.implied_languages.insert((*l).to_string());
        }
    }
    f
}

/// Unit symbols that are also everyday words ("a bit", "mi casa", "in"): units only
/// right after a number.
const AMBIGUOUS_UNITS: &[&str] = &[
    "bit", "bits", "mi", "in", "pt", "m", "s", "g", "t", "l", "foot", "w",
];

/// Whether the token before `k` is a number ("32 bit", "5 mi").
fn number_last_token(tokens: &[Token], k: usize) -> bool {
    k > 0 && (tokens[k - 1].numeric || lexicon().numbers.contains_key(tokens[k - 1].text.as_str()))
}

/// The base form of the auxiliaries a negation attaches to ("doesn't have" /
/// "has"); other words as they are.
fn lemma(w: &str) -> String {
    match w {
        "has" | "had" | "having" => "have",
        "does" | "did" | "doing" | "done" => "do",
        "is" | "are" | "was" | "were" | "am" | "been" | "being" => "be",
        w => w,
    }
    .to_string()
}

/// Verbs of cause and effect, with the relation they name.
const CAUSAL: &[(&str, &str)] = &[
    ("cause", "cause"),
    ("causes", "cause"),
    ("caused", "cause"),
    ("causing", "cause"),
    ("affect", "affect"),
    ("affects", "affect"),
    ("affected", "affect"),
    ("influence", "influence"),
    ("influences", "influence"),
];

/// What a question that opens with a question word asks for: a person, a time, a
/// place, a reason or a quantity. "What" and "how" ask for anything.
fn question_kind(w: &str, next: &str) -> Option<&'static str> {
    Some(match (w, next) {
        ("who" | "whom" | "whose" | "who's", _) => "person",
        // "When was it painted?" asks for a time; "When training, how many…" does
        // not.
        (
            "when",
            "is" | "was" | "are" | "were" | "does" | "do" | "did" | "will" | "can" | "should"
            | "would" | "could" | "has" | "have",
        )
        | ("when's", _)
        | ("what", "time" | "year" | "date" | "day") => "time",
        ("where" | "where's", _) => "place",
        ("why" | "why's", _) => "reason",
        ("how", "many" | "much") => "quantity",
        _ => return None,
    })
}

/// Words a negation looks past to find what it negates.
const NEGATION_SKIP: &[&str] = &[
    "a", "an", "the", "any", "my", "your", "his", "her", "its", "our", "their", "this", "that",
    "these", "those", "be", "been", "being", "get", "got", "to", "so", "very", "really", "too",
    "even", "yet", "always", "ever", "quite", "at", "all", "it", "i", "you", "we", "they", "he",
    "she", "me", "us", "them", "much", "more", "longer",
];

/// Adverbs of a rate, and the period they are per.
const RATE_WORDS: &[(&str, &str)] = &[
    ("hourly", "hour"),
    ("daily", "day"),
    ("nightly", "night"),
    ("weekly", "week"),
    ("monthly", "month"),
    ("yearly", "year"),
    ("annual", "year"),
    ("annually", "year"),
];

/// Tools that name their programming language: a request about "pip" is about
/// Python whether or not it says so.
const IMPLIED_LANGUAGES: &[(&str, &str)] = &[
    ("pip", "python"),
    ("pypi", "python"),
    ("pandas", "python"),
    ("numpy", "python"),
    ("scipy", "python"),
    ("matplotlib", "python"),
    ("django", "python"),
    ("flask", "python"),
    ("fastapi", "python"),
    ("pytest", "python"),
    ("virtualenv", "python"),
    ("venv", "python"),
    ("conda", "python"),
    ("pythonic", "python"),
    ("indentationerror", "python"),
    ("modulenotfounderror", "python"),
    ("importerror", "python"),
    ("npm", "javascript"),
    ("nodejs", "javascript"),
    ("jquery", "javascript"),
    ("useeffect", "javascript"),
    ("usestate", "javascript"),
    ("join", "sql"),
    ("postgres", "sql"),
    ("postgresql", "sql"),
    ("mysql", "sql"),
    ("sqlite", "sql"),
    ("bash", "shell"),
    ("zsh", "shell"),
    ("chmod", "shell"),
    ("linux", "shell"),
    ("terminal", "shell"),
];

/// The form negated words are compared in.
fn negated_form(w: &str) -> String {
    lemma(&singular(&canonical(w)))
}

/// Whether a negation on one side negates a word the other side says plainly
/// ("foods that don't contain gluten" / "foods that contain gluten", "without
/// paying a fee" / "is there a fee"), or, with word vectors, in a word of the same
/// meaning ("odorless" / "have a smell"). A negation is answered by one on the
/// other side that reaches a word it reaches. A negation whose words the other side
/// does not use is part of a rewording ("has no elements" / "is empty"), left to
/// the content check.
fn negation_flips(fa: &Features, fb: &Features, words: Option<&dyn WordVectors>) -> Option<String> {
    for (x, y) in [(fa, fb), (fb, fa)] {
        let mut answered = vec![false; y.negated.len()];
        let mut open: Vec<usize> = Vec::new();
        for (i, scope) in x.negated.iter().enumerate() {
            let by = (0..y.negated.len())
                .find(|&j| !answered[j] && y.negated[j].iter().any(|w| scope.contains(w)));
            match by {
                Some(j) => answered[j] = true,
                None => open.push(i),
            }
        }
        for &i in &open {
            if let Some(w) = x.negated[i]
                .iter()
                .find(|w| y.words.contains(*w) && !y.avoided.contains(*w))
            {
                return Some(w.clone());
            }
        }
        let Some(wv) = words else { continue };
        // The words the other side says plainly (not under its own negations).
        let theirs: Vec<&str> = y
            .content
            .iter()
            .filter(|(_, raw)| {
                let form = negated_form(raw);
                !y.negated.iter().any(|s| s.contains(&form)) && !y.avoided.contains(&form)
            })
            .map(|(_, raw)| raw.as_str())
            .collect();
        for i in open {
            let Some(w) = x.negated_raw.get(i) else {
                continue;
            };
            if theirs.is_empty() || lexicon().fillers.contains(w.as_str()) {
                continue;
            }
            let mut ask: Vec<&str> = vec![w.as_str()];
            ask.extend(theirs.iter().copied());
            let Some(v) = wv.vectors(&ask) else { continue };
            if let Some(i) = (1..v.len()).find(|&i| {
                !opposite_words(w, ask[i]) && crate::embed::cosine(&v[0], &v[i]) >= WORD_MATCH
            }) {
                return Some(format!("{w} ~ {}", ask[i]));
            }
        }
    }
    None
}

/// Auxiliaries that take a negating "n't", also written without the apostrophe
/// ("hasnt", "dont", "cant").
const NEGATED_AUXILIARIES: &[&str] = &[
    "do", "does", "did", "is", "are", "was", "were", "has", "have", "had", "should", "would",
    "could", "must", "need", "ca", "wo", "ai", "sha", "might",
];

/// Determiners: "out of the carpet" is a place, "out of stock" a lack.
const DETERMINERS: &[&str] = &[
    "a", "an", "the", "my", "your", "his", "her", "its", "our", "their", "this", "that", "these",
    "those",
];

/// The thing a "-less" word lacks ("seedless" → "seed", "wireless" → "wire"),
/// when what is left is a word of the vocabulary.
fn lacking(w: &str) -> Option<&str> {
    const NOT_A_LACK: &[&str] = &[
        "unless",
        "regardless",
        "nevertheless",
        "nonetheless",
        "bless",
        "nonsense",
        "none",
    ];
    if NOT_A_LACK.contains(&w) {
        return None;
    }
    // "seedless", "odorless"; "waterproof"; "nonstop", "nonfat" (written apart,
    // "non-stop" is a negating prefix of its own).
    let base = w
        .strip_suffix("less")
        .or_else(|| w.strip_suffix("proof"))
        .or_else(|| w.strip_prefix("non"))?;
    (base.chars().count() >= 3 && lexicon().words.contains(base)).then_some(base)
}

/// A process whose state differs between the two sides: each says a state the
/// other does not ("shipped" / "delivered"). Returns the two state words.
fn state_change(a: &str, b: &str, fa: &Features, fb: &Features) -> Option<(String, String)> {
    let lex = lexicon();
    for &(p, s1) in fa.states.difference(&fb.states) {
        if let Some(&(_, s2)) = fb.states.difference(&fa.states).find(|(q, _)| *q == p) {
            let word = |text: &str, state: (u16, u16)| {
                tokenize(text)
                    .into_iter()
                    .map(|t| t.text)
                    .find(|w| {
                        lex.states
                            .get(w.as_str())
                            .is_some_and(|v| v.contains(&state))
                    })
                    .unwrap_or_default()
            };
            return Some((word(a, (p, s1)), word(b, (p, s2))));
        }
    }
    None
}

/// The text a request gives to be worked on, normalized (lowercase, single
/// spaces, no closing punctuation): a span in double quotes, or what follows a
/// short lead-in and a colon ("grammar check: …", "translate to French: …").
fn payload(s: &str) -> Option<String> {
    let norm = |t: &str| {
        t.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
            .trim_end_matches(['.', '?', '!'])
            .to_string()
    };
    for (open, close) in [('"', '"'), ('“', '”'), ('«', '»')] {
        if let Some((_, rest)) = s.split_once(open) {
            if let Some((quoted, _)) = rest.split_once(close) {
                if quoted.trim().chars().count() >= 2 {
                    return Some(norm(quoted));
                }
            }
        }
    }
    let (lead, rest) = s.split_once(':')?;
    let lead_words = lead.split_whitespace().count();
    // "10:30", "http://": a colon inside a token is no lead-in.
    let starts_word = rest.starts_with(char::is_whitespace);
    ((1..=4).contains(&lead_words) && starts_word && !rest.trim().is_empty()).then(|| norm(rest))
}

/// Whether `w` (followed by `next`) says "not". "un", "dis" count only as a
/// hyphenated prefix ("un-install"): alone they are Spanish and French articles or
/// words ("un error"). "fail to" is "not" ("fail to rise" / "not rise"). "out of" is
/// a lack ("out of stock") unless a determiner follows ("out of a carpet").
fn negation(w: &str, next: &str, hyphen: bool) -> bool {
    if matches!(w, "un" | "dis") {
        return hyphen;
    }
    if w == "outof" {
        return !DETERMINERS.contains(&next);
    }
    if matches!(w, "fail" | "fails" | "failed" | "failing") {
        return next == "to";
    }
    lexicon().negations.contains(w)
        || w.ends_with("n't")
        || w.strip_suffix("nt")
            .is_some_and(|aux| NEGATED_AUXILIARIES.contains(&aux))
}

/// A token with digits that names something rather than counting it: letters
/// first ("x86", "mp3", "h264") or digits with letters that are no unit, ordinal
/// or multiplier after them ("2fa", "3ds"). "5kg", "2nd", "10am", "4k", "1990s",
/// "2x" stay numbers.
fn identifier(w: &str) -> bool {
    let rest = w.trim_start_matches(|c: char| c.is_ascii_digit() || ".,:/-^".contains(c));
    if rest.is_empty() || !rest.chars().any(char::is_alphabetic) {
        return false;
    }
    if rest.len() == w.len() || rest.chars().any(|c| c.is_ascii_digit()) {
        return true;
    }
    let suffix = matches!(
        rest,
        "st" | "nd" | "rd" | "th" | "x" | "s" | "k" | "m" | "b" | "bn" | "am" | "pm" | "h"
    );
    !suffix && !lexicon().units.contains_key(rest)
}

/// The numbers of the two sides agree once weak number words are set aside: what
/// is left over after pairing equal numbers must come from weak words, and no kind
/// (ordinal, multiple, count) may be left over on both sides. Returns the weak words
/// set aside on each side, to be judged as words.
fn numbers_agree(fa: &Features, fb: &Features) -> Option<(Vec<String>, Vec<String>)> {
    fn leftover(
        own: &BTreeMap<String, usize>,
        other: &BTreeMap<String, usize>,
    ) -> BTreeMap<String, usize> {
        own.iter()
            .filter_map(|(n, &c)| {
                let left = c.saturating_sub(other.get(n).copied().unwrap_or(0));
                (left > 0).then(|| (n.clone(), left))
            })
            .collect()
    }
    fn kind(n: &str) -> u8 {
        if n.ends_with("st") || n.ends_with("nd") || n.ends_with("rd") || n.ends_with("th") {
            0
        } else if n.ends_with('x') {
            1
        } else {
            2
        }
    }
    let mut set_aside = Vec::new();
    for (f, left) in [
        (fa, leftover(&fa.numbers, &fb.numbers)),
        (fb, leftover(&fb.numbers, &fa.numbers)),
    ] {
        let mut words = Vec::new();
        for (n, c) in &left {
            let weak: Vec<&String> = f
                .weak
                .iter()
                .filter(|(v, _)| v == n)
                .map(|(_, w)| w)
                .collect();
            if weak.len() < *c {
                return None;
            }
            words.extend(weak.iter().take(*c).map(|w| (*w).clone()));
        }
        set_aside.push((
            words,
            left.keys().map(|n| kind(n)).collect::<BTreeSet<u8>>(),
        ));
    }
    let (wb, kb) = set_aside.pop()?;
    let (wa, ka) = set_aside.pop()?;
    if ka.intersection(&kb).next().is_some() {
        return None;
    }
    Some((wa, wb))
}

fn fmt_set<T: std::fmt::Debug>(s: &T) -> String {
    format!("{s:?}")
}

/// Content words left on each side after typos are matched away.
type Leftover = (String, String);

fn unexplained(a: &[(String, String)], b: &[(String, String)]) -> (Vec<Leftover>, Vec<Leftover>) {
    let ca: BTreeSet<&String> = a.iter().map(|(c, _)| c).collect();
    let cb: BTreeSet<&String> = b.iter().map(|(c, _)| c).collect();
    let raw = |side: &[(String, String)], c: &String| {
        side.iter()
            .find(|(x, _)| x == c)
            .map(|(_, r)| r.clone())
            .unwrap_or_default()
    };
    let mut only_a: Vec<(String, String)> = ca
        .difference(&cb)
        .map(|c| ((*c).clone(), raw(a, c)))
        .collect();
    let mut only_b: Vec<(String, String)> = cb
        .difference(&ca)
        .map(|c| ((*c).clone(), raw(b, c)))
        .collect();
    // Pair off typos (judged on the words as written).
    let mut i = 0;
    while i < only_a.len() {
        if let Some(j) = only_b.iter().position(|w| typo_of(&only_a[i].1, &w.1)) {
            only_a.remove(i);
            only_b.remove(j);
        } else {
            i += 1;
        }
    }
    let a_canon: Vec<String> = a.iter().map(|(c, _)| c.clone()).collect();
    let b_canon: Vec<String> = b.iter().map(|(c, _)| c.clone()).collect();
    // A compound written apart on the other side ("login" / "log in").
    only_a.retain(|(w, _)| !is_split_of(w, &b_canon));
    only_b.retain(|(w, _)| !is_split_of(w, &a_canon));
    (only_a, only_b)
}

/// Lowercase words of a request, as a sorted multiset.
fn word_multiset(s: &str) -> Vec<String> {
    // "Who did Germany beat?" / "Who beat Germany?": the "did" of a question
    // changes no word.
    // Compared in canonical form (stem, irregular past forms by their base): "Who
    // did Ali defeat?" / "Who defeated Ali?", "Who taught Plato?" / "Who did Plato
    // teach?".
    let mut v: Vec<String> = tokenize(s)
        .into_iter()
        .map(|t| t.text)
        .filter(|w| !matches!(w.as_str(), "do" | "does" | "did"))
        .map(|w| canonical(&w))
        .collect();
    v.sort();
    v
}

fn same_words(a: &str, b: &str) -> bool {
    word_multiset(a) == word_multiset(b)
}

/// `incorrect` where `words` has `correct` (un-, in-, im-, il-, ir-, dis-, non-).
fn negates_one_of(w: &str, words: &BTreeSet<String>) -> bool {
    NEGATING_PREFIXES.iter().any(|p| {
        w.strip_prefix(p)
            .is_some_and(|rest| rest.len() >= 3 && words.contains(rest))
    })
}

/// Prefixes that negate the word they are put before ("unsafe", "illegal").
const NEGATING_PREFIXES: &[&str] = &["un", "in", "im", "il", "ir", "dis", "non"];

/// Each word of a request as written, in canonical form.
fn canonical_words(s: &str) -> BTreeSet<String> {
    tokenize(s)
        .into_iter()
        .map(|t| canonical(&t.text))
        .collect()
}

/// A question frame or filler-like request word ("explain", "how", "way").
fn is_frame((c, raw): &Leftover) -> bool {
    let frames = &lexicon().frames;
    frames.contains(raw.as_str()) || frames.contains(c.as_str())
}

/// Adds to `forms` what `w` is with each of `suffixes` taken off, with and without
/// a final "e" ("encrypting" → "encrypt", "encrypte").
fn push_suffix_bases(w: &str, suffixes: &[&str], forms: &mut Vec<String>) {
    for suf in suffixes {
        if let Some(b) = w.strip_suffix(suf) {
            forms.push(b.to_string());
            forms.push(format!("{b}e"));
        }
    }
}

fn is_split_of(w: &str, other: &[String]) -> bool {
    other
        .windows(2)
        .any(|p| format!("{}{}", p[0], p[1]) == *w || format!("{}-{}", p[0], p[1]) == *w)
}

/// The sequence of words both sides share, in each side's order (repeats kept).
fn shared_order(a: &[String], b: &[String]) -> (Vec<String>, Vec<String>) {
    let sa: BTreeSet<&String> = a.iter().collect();
    let sb: BTreeSet<&String> = b.iter().collect();
    let oa: Vec<String> = a.iter().filter(|w| sb.contains(w)).cloned().collect();
    let ob: Vec<String> = b.iter().filter(|w| sa.contains(w)).cloned().collect();
    (oa, ob)
}

/// Words from the previous relation word (or the start) up to marker `i`, and from
/// it to the next relation word (or the end).
fn windows(seq: &[Marked], i: usize) -> (BTreeSet<&String>, BTreeSet<&String>) {
    fn words<'a>(it: impl Iterator<Item = &'a Marked>) -> BTreeSet<&'a String> {
        let mut out = BTreeSet::new();
        for m in it {
            match m {
                Marked::Word(w) => {
                    out.insert(w);
                }
                Marked::Marker(_) | Marked::Boundary => break,
            }
        }
        out
    }
    (words(seq[..i].iter().rev()), words(seq[i + 1..].iter()))
}

/// A relation word both sides use, with what stood on its right on one side standing
/// on its left on the other, and the other way round ("from London to New York" /
/// "from New York to London").
fn swapped_around_marker(a: &[Marked], b: &[Marked]) -> Option<String> {
    for (i, ma) in a.iter().enumerate() {
        let Marked::Marker(m) = ma else { continue };
        let (la, ra) = windows(a, i);
        for (j, mb) in b.iter().enumerate() {
            if mb != ma {
                continue;
            }
            let (lb, rb) = windows(b, j);
            let moved_left: Vec<_> = ra.intersection(&lb).filter(|w| !la.contains(*w)).collect();
            let moved_right: Vec<_> = la.intersection(&rb).filter(|w| !ra.contains(*w)).collect();
            if !moved_left.is_empty() && !moved_right.is_empty() {
                return Some(m.clone());
            }
        }
    }
    None
}

/// After the common prefix and suffix, one side is L+M+R and the other R+M+L with
/// L, M and R all non-empty.
fn swapped_around_middle(a: &[String], b: &[String]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suf = a[pre..]
        .iter()
        .rev()
        .zip(b[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (a, b) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    let n = a.len();
    for l in 1..n {
        for r in 1..n.saturating_sub(l) {
            let m = n - l - r;
            if m == 0 {
                continue;
            }
            if a[..l] == b[n - l..] && a[n - r..] == b[..r] && a[l..l + m] == b[r..r + m] {
                return true;
            }
        }
    }
    false
}

/// A pair of opposite words, one on each side, that the other side lacks.
fn opposed(a: &BTreeSet<String>, b: &BTreeSet<String>) -> Option<(String, String)> {
    let lex = lexicon();
    for p in a {
        let Some(opposites) = lex.opposites.get(p.as_str()) else {
            continue;
        };
        for q in opposites {
            // A side that names both poles ("chewy instead of crispy", "rent or
            // buy") swapped nothing.
            if b.contains(*q) && !a.contains(*q) && !b.contains(p) {
                return Some((p.clone(), (*q).to_string()));
            }
        }
    }
    None
}

/// The order of what both requests mention says they ask different things.
fn reordered(fa: &Features, fb: &Features, a: &str, b: &str) -> Option<Mismatch> {
    let miss = |detail: String| {
        Some(Mismatch {
            kind: "direction",
            detail,
        })
    };
    let (oa, ob) = shared_order(&fa.sequence, &fb.sequence);
    if oa != ob && symmetric(a, b) {
        // "baking soda vs baking powder" / "how do baking powder and baking soda
        // differ": a comparison reads the same both ways.
        return None;
    }
    if oa != ob && same_words(a, b) {
        // The same words in another order ("is a square a rectangle?" / "is a
        // rectangle a square?"): a rearrangement, not a rewording.
        return miss(format!("same words, other order: {oa:?} vs {ob:?}"));
    }
    if oa != ob {
        // Moving a clause or a topic to the front keeps the meaning ("in Jest, how do
        // I mock a function?"). Swapping the two sides of a relation reverses it:
        // around a relation word ("Berlin to Paris" / "Paris to Berlin") or around
        // a shared middle ("vitamin D helps absorb calcium" / "calcium helps absorb
        // vitamin D").
        if let Some(m) = swapped_around_marker(&fa.marked, &fb.marked) {
            return miss(format!("swapped around `{m}`: {oa:?} vs {ob:?}"));
        }
        // Without a relation word, only a rearrangement of the same words says the
        // two sides of a relation swapped ("the buyer pays the seller's costs" /
        // "the seller pays the buyer's costs"). Reworded requests move words for
        // other reasons ("center a div horizontally with CSS" / "the CSS to
        // horizontally center a div"); their words are judged below.
        if swapped_around_middle(&oa, &ob) && same_anchors(fa, fb) {
            return miss(format!("{oa:?} vs {ob:?}"));
        }
    }
    // "My brother owes me" / "I owe my brother": two words trade places while "I"
    // and "me" trade roles.
    let norm = |seq: &[String]| seq.iter().map(|w| singular(w)).collect::<Vec<_>>();
    let (qa, qb) = (norm(&fa.sequence), norm(&fb.sequence));
    let (na, nb) = shared_order(&qa, &qb);
    if let Some((x, y)) = adjacent_swap(&na, &nb).filter(|_| same_multiset(&qa, &qb)) {
        if first_person_flips(a, b) {
            return miss(format!(
                "`{x}` and `{y}` trade places, and I / me trade roles"
            ));
        }
    }
    None
}

/// The two sequences differ only by two neighbours trading places.
fn adjacent_swap<'s>(a: &'s [String], b: &[String]) -> Option<(&'s str, &'s str)> {
    if a.len() != b.len() {
        return None;
    }
    let i = a.iter().zip(b).position(|(x, y)| x != y)?;
    let swapped =
        i + 1 < a.len() && a[i] == b[i + 1] && a[i + 1] == b[i] && a[i + 2..] == b[i + 2..];
    swapped.then(|| (a[i].as_str(), a[i + 1].as_str()))
}

/// In the first sentence, one side speaks as the subject ("I") and the other as
/// the object ("me").
fn first_person_flips(a: &str, b: &str) -> bool {
    let roles = |s: &str| {
        let toks = tokenize(s);
        let first: Vec<String> = toks
            .iter()
            .enumerate()
            .take_while(|(k, t)| *k == 0 || !t.boundary)
            .map(|(_, t)| t.text.clone())
            .collect();
        let has = |w: &str| first.iter().any(|t| t == w);
        (has("i") || has("i'm"), has("me"))
    };
    let ((ia, ma), (ib, mb)) = (roles(a), roles(b));
    (ia && !ma && mb && !ib) || (ma && !ia && ib && !mb)
}

/// The numbers differ only by a "one" that the other side says with "a", "an",
/// "single" or "each" ("in one day" / "a day contains", "one order" / "a single
/// order").
fn one_as_article(fa: &Features, fb: &Features, a: &str, b: &str) -> bool {
    let article = |s: &str| {
        tokenize(s)
            .iter()
            .any(|t| matches!(t.text.as_str(), "a" | "an" | "single" | "each" | "per"))
    };
    let without_one = |f: &Features| {
        let mut n = f.numbers.clone();
        if let Some(c) = n.get_mut("1") {
            *c -= 1;
            if *c == 0 {
                n.remove("1");
            }
        }
        n
    };
    (without_one(fa) == fb.numbers && fa.numbers.contains_key("1") && article(b))
        || (without_one(fb) == fa.numbers && fb.numbers.contains_key("1") && article(a))
}

/// The same anchors (content words, numbers, units, …) on both sides, in any order
/// and any inflection ("seller's" / "seller").
fn same_anchors(fa: &Features, fb: &Features) -> bool {
    same_multiset(&fa.sequence, &fb.sequence)
}

/// The same words, each as often, in any order.
fn same_multiset(a: &[String], b: &[String]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

/// Words that start a comparison, which reads the same both ways.
const COMPARISONS: &[&str] = &[
    "differ",
    "distinguish",
    "compar",
    "vs",
    "versus",
    "similar",
    "equivalent",
    "same",
    "apart",
];

fn is_comparison(w: &str) -> bool {
    COMPARISONS.iter().any(|c| w.starts_with(c))
}

/// A comparison ("difference", "compare", "differ", "vs") with no one-way relation
/// word (to, from, into, than) on either side. The `from`, `to` or `than` of the
/// comparison itself ("how does X differ from Y", "X compared to Y", "different
/// than") is no one-way relation.
fn symmetric(a: &str, b: &str) -> bool {
    let one_way = |s: &str| {
        let words: Vec<String> = tokenize(s).into_iter().map(|t| t.text).collect();
        words.iter().enumerate().any(|(i, w)| {
            // "differ from", "compared to", "different than"; "distinguish X from",
            // "compare X to" with no other relation word in between.
            let before = &words[i.saturating_sub(4)..i];
            let direct = before.last().is_some_and(|p| is_comparison(p));
            let verb = before
                .iter()
                .rev()
                .take_while(|p| !matches!(p.as_str(), "to" | "from" | "into" | "than"))
                .any(|p| {
                    (w == "from" && p.starts_with("distinguish"))
                        || (w == "to" && p.starts_with("compar"))
                });
            let bound = matches!(w.as_str(), "from" | "to" | "than") && (direct || verb);
            !bound
                && matches!(
                    w.as_str(),
                    "to" | "from" | "into" | "than" | "onto" | "toward" | "towards" | "->" | "→"
                )
        })
    };
    let comparison = |s: &str| tokenize(s).iter().any(|t| is_comparison(&t.text));
    (comparison(a) || comparison(b)) && !one_way(a) && !one_way(b)
}

/// A short clause set off at the front by a comma, moved to the end: "In Python,
/// how do I read a file?" → "how do I read a file? In Python". `None` without one.
fn unfront(s: &str) -> Option<String> {
    let (head, rest) = s.split_once(", ")?;
    let words = head.split_whitespace().count();
    if words == 0 || words > 6 || rest.trim().is_empty() {
        return None;
    }
    let rest = rest.trim().trim_end_matches(['?', '.', '!']);
    Some(format!("{rest} {head}"))
}

/// Checks that B asks what A asked. `Ok` means the cached answer of A fits B.
/// The same words in the same order, up to typos, casing, punctuation and British
/// or American spelling ("Where can I find my order history?" / "where can i find my
/// order histroy"). A typo can move a short request's embedding far more than its
/// meaning, so such a pair is judged by the guards below the similarity threshold
/// too.
pub fn surface_variant(a: &str, b: &str) -> bool {
    let ta = tokenize(a);
    let tb = tokenize(b);
    ta.len() == tb.len()
        && ta.len() >= 3
        && ta.iter().zip(&tb).all(|(x, y)| {
            x.text == y.text || typo_of(&x.text, &y.text) || american(&x.text) == american(&y.text)
        })
}

pub fn verify(a: &str, b: &str) -> Result<(), Mismatch> {
    verify_at(a, b, 0.0)
}

/// Vectors for single words, to pair off the words a rewording swapped ("fridge" /
/// "refrigerator", "merge" / "combine"). The live cache and `triage cache explain`
/// both give the embedding model's; without one, only the lexical tables explain
/// words.
pub trait WordVectors: Send + Sync {
    /// Unit vectors for the words, in order; `None` when they cannot be had.
    fn vectors(&self, words: &[&str]) -> Option<Vec<Vec<f32>>>;
}

/// How close two single words' vectors must be to count as the same word swapped
/// in a rewording. Antonyms come close too ("hot" / "cold"), so those never pair.
pub const WORD_MATCH: f32 = 0.65;

/// [`verify_at`] without word vectors.
pub fn verify_at(a: &str, b: &str, similarity: f32) -> Result<(), Mismatch> {
    verify_with(a, b, similarity, None)
}

/// [`verify`], knowing the two requests' sentence similarity: a rewording (words
/// changed in several places, not one slot) may leave a few common words
/// unexplained when the similarity is high. The hard guards do not look at it.
/// With word vectors, words of the two sides that mean the same are paired off
/// before counting (never in a one-slot change, never antonyms).
pub fn verify_with(
    a: &str,
    b: &str,
    similarity: f32,
    words: Option<&dyn WordVectors>,
) -> Result<(), Mismatch> {
    let mut fa = features(a);
    let mut fb = features(b);
    let miss = |kind: &'static str, detail: String| Err(Mismatch { kind, detail });
    // Weak number words set aside by the number guard: judged as words, and never
    // as common ones (a "first" added on one side is no rewording).
    let mut weak_words: BTreeSet<String> = BTreeSet::new();
    let agreed = if fa.numbers == fb.numbers || one_as_article(&fa, &fb, a, b) {
        Some((Vec::new(), Vec::new()))
    } else {
        numbers_agree(&fa, &fb)
    };
    if let Some((wa, wb)) = &agreed {
        for (f, words) in [(&mut fa, wa), (&mut fb, wb)] {
            for w in words {
                f.content.push((canonical(w), w.clone()));
                weak_words.insert(w.clone());
            }
        }
    } else {
        return miss(
            "number",
            format!(
                "{} vs {}",
                fmt_set(&fa.numbers.keys().collect::<Vec<_>>()),
                fmt_set(&fb.numbers.keys().collect::<Vec<_>>())
            ),
        );
    }
    if fa.datetime != fb.datetime {
        return miss(
            "datetime",
            format!("{:?} vs {:?}", fa.datetime, fb.datetime),
        );
    }
    if (!fa.numbers.is_empty() && fa.durations != fb.durations) || fa.rates != fb.rates {
        return miss(
            "datetime",
            format!("{:?} vs {:?}", fa.durations, fb.durations),
        );
    }
    if fa.units != fb.units {
        return miss("unit", format!("{:?} vs {:?}", fa.units, fb.units));
    }
    let stated_or_implied = |f: &Features| -> BTreeSet<String> {
        f.languages.union(&f.implied_languages).cloned().collect()
    };
    if fa.languages != fb.languages && stated_or_implied(&fa) != stated_or_implied(&fb) {
        return miss(
            "language",
            format!("{:?} vs {:?}", fa.languages, fb.languages),
        );
    }
    if fa.negations != fb.negations {
        if let Some(w) = negation_flips(&fa, &fb, words) {
            return miss(
                "negation",
                format!(
                    "{} vs {} negations, `{w}` negated on one side only",
                    fa.negations, fb.negations
                ),
            );
        }
    }
    if let (Some(x), Some(y)) = (fa.question, fb.question) {
        // "Who painted the Mona Lisa?" / "When was the Mona Lisa painted?"
        if x != y {
            return miss("content", format!("asks for a {x} vs a {y}"));
        }
    }
    if let Some((x, y)) = opposed(&fa.antonym_words, &fb.antonym_words) {
        return miss("antonym", format!("{x:?} vs {y:?}"));
    }
    if let Some((x, y)) = state_change(a, b, &fa, &fb) {
        return miss(
            "state",
            format!("{x:?} vs {y:?}: different states of one process"),
        );
    }
    if let (Some(x), Some(y)) = (payload(a), payload(b)) {
        // Text given to work on ("grammar check: their going…", "translate \"…\"")
        // is the request's object, word for word: "their" and "they're" differ.
        if x != y {
            return miss("content", format!("the text given differs: {x:?} vs {y:?}"));
        }
    }
    if let Some(m) = reordered(&fa, &fb, a, b) {
        // A clause moved to the front and set off by a comma keeps the meaning
        // ("If I cancel today, will I get a refund?" / "Will I get a refund if I
        // cancel today?"): put it back at the end and compare again.
        let (ua, ub) = (unfront(a), unfront(b));
        let moved = ua.is_some() || ub.is_some();
        let (ua, ub) = (
            ua.unwrap_or_else(|| a.to_string()),
            ub.unwrap_or_else(|| b.to_string()),
        );
        if !moved || reordered(&features(&ua), &features(&ub), &ua, &ub).is_some() {
            return Err(m);
        }
    }
    let (only_a, only_b) = unexplained(&fa.content, &fb.content);
    let extra: Vec<&String> = only_a.iter().chain(&only_b).map(|(c, _)| c).collect();
    // A word that negates one the other side says plainly ("unsafe" / "safe"). Not
    // when its own side names the plain word too ("advantages and disadvantages"),
    // nor when the other side negates it another way ("non-technical" / "without a
    // technical background").
    let (plain_a, plain_b) = if extra.is_empty() {
        (BTreeSet::new(), BTreeSet::new())
    } else {
        (canonical_words(a), canonical_words(b))
    };
    let flips = |w: &String, own: &Features, other: &BTreeSet<String>, theirs: &Features| {
        negates_one_of(w, other)
            && !negates_one_of(w, &own.words)
            && !(["non", "un", "dis"].iter().any(|p| w.starts_with(p))
                && theirs
                    .negated
                    .iter()
                    .flatten()
                    .any(|n| w.ends_with(n.as_str()) && n.len() >= 3))
    };
    let flipped = only_a
        .iter()
        .map(|(c, _)| c)
        .find(|w| flips(w, &fa, &plain_b, &fb))
        .or_else(|| {
            only_b
                .iter()
                .map(|(c, _)| c)
                .find(|w| flips(w, &fb, &plain_a, &fa))
        });
    if let Some(w) = flipped {
        return miss(
            "negation",
            format!("`{w}` negates a word of the other request"),
        );
    }
    if extra.is_empty() {
        return Ok(());
    }
    let proper = |raw: &str| fa.proper.contains(raw) || fb.proper.contains(raw);
    let (only_a, only_b, number_changes) = fold_variants(only_a, only_b, &fa.proper, &fb.proper);
    let (only_a, only_b) = (
        drop_spelling_variants(only_a, a, b),
        drop_spelling_variants(only_b, b, a),
    );
    let lex = lexicon();
    // The words left on each side, question frames aside.
    let kept_a: Vec<&Leftover> = only_a.iter().filter(|l| !is_frame(l)).collect();
    let kept_b: Vec<&Leftover> = only_b.iter().filter(|l| !is_frame(l)).collect();
    let left: Vec<&Leftover> = kept_a.iter().chain(&kept_b).copied().collect();
    if left.is_empty() && number_changes == 0 {
        return Ok(());
    }
    let names =
        |side: &[&Leftover]| -> Vec<String> { side.iter().map(|(c, _)| c.clone()).collect() };
    let content_miss = |why: &str| {
        miss(
            "content",
            format!(
                "{:?} vs {:?}{}{why}",
                names(&kept_a),
                names(&kept_b),
                if number_changes > 0 {
                    ", singular vs plural"
                } else {
                    ""
                }
            ),
        )
    };
    // A different operation on the same subject ("summarize" / "translate").
    let (tasks_a, tasks_b) = (tasks_of(&only_a, &fa.words), tasks_of(&only_b, &fb.words));
    let task_change = if !tasks_a.is_empty() && !tasks_b.is_empty() {
        tasks_a.symmetric_difference(&tasks_b).next()
    } else {
        tasks_a
            .iter()
            .chain(&tasks_b)
            .find(|t| ADDED_TASKS.contains(t))
    };
    if let Some(t) = task_change {
        return miss(
            "content",
            format!("{tasks_a:?} vs {tasks_b:?}: asks for another task (`{t}`)"),
        );
    }
    // Everything else equal, one slot changed ("a joke" / "a pun", "Norway" /
    // "Sweden", "drummer" / "drummers"): a different request, however similar.
    if minimal_pair(a, b) {
        return content_miss("");
    }
    // A rewording: words differ in several places. Names, rare or technical words
    // and pronouns left unexplained still decide; a few common words may differ
    // when the sentences are close enough.
    if let Some((_, raw)) = left
        .iter()
        .find(|(_, raw)| proper(raw) || lex.pronouns.contains(raw.as_str()))
    {
        return content_miss(&format!(" (`{raw}` is a name or a pronoun)"));
    }
    let common = |raw: &str| is_common(raw) && !weak_words.contains(raw);
    let mut allowed = rewording_allowance(similarity);
    // Words added on one side only, nothing they replace on the other: a
    // constraint added ("a lasagna recipe" / "a vegan lasagna recipe"), not a
    // rewording. At most one common word.
    if kept_a.is_empty() || kept_b.is_empty() {
        if let Some((_, raw)) = left.iter().find(|(_, raw)| !common(raw)) {
            return content_miss(&format!(" (`{raw}` added on one side only)"));
        }
        allowed = allowed.min(ONE_SIDED_ALLOWANCE);
    }
    let content_words = fa.content.len() + fb.content.len();
    // A word outside the common vocabulary (jargon, an identifier, a rare word)
    // counts twice.
    let weight = |left: &[&Leftover]| {
        left.iter()
            .map(|(_, raw)| if common(raw) { 1 } else { RARE_WORD_WEIGHT })
            .sum::<usize>()
            + number_changes
    };
    let mut unexplained = weight(&left);
    let over = |u: usize| u > allowed || u > content_words;
    if over(unexplained) && !kept_a.is_empty() && !kept_b.is_empty() {
        if let Some(wv) = words {
            let paired = pair_by_meaning(&kept_a, &kept_b, wv);
            let rest: Vec<&Leftover> = left
                .iter()
                .copied()
                .filter(|l| !paired.contains(&l.1))
                .collect();
            unexplained = weight(&rest);
        }
    }
    if over(unexplained) {
        return content_miss(&format!(
            " ({unexplained} of {content_words} words unexplained at similarity \
             {similarity:.3}, {allowed} allowed)"
        ));
    }
    Ok(())
}

/// Pairs off words of the two sides whose single-word vectors are at least
/// [`WORD_MATCH`] alike, best pairs first, each word at most once; antonyms and
/// prefix opposites never pair. Returns the paired words as written.
fn pair_by_meaning(a: &[&Leftover], b: &[&Leftover], wv: &dyn WordVectors) -> BTreeSet<String> {
    let mut paired = BTreeSet::new();
    let words: Vec<&str> = a.iter().chain(b).map(|(_, raw)| raw.as_str()).collect();
    let Some(vecs) = wv.vectors(&words) else {
        return paired;
    };
    if vecs.len() != words.len() {
        return paired;
    }
    let (va, vb) = vecs.split_at(a.len());
    let mut scored: Vec<(f32, usize, usize)> = Vec::new();
    for (i, x) in va.iter().enumerate() {
        for (j, y) in vb.iter().enumerate() {
            let sim: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            if sim >= WORD_MATCH && !opposite_words(&a[i].1, &b[j].1) {
                scored.push((sim, i, j));
            }
        }
    }
    scored.sort_by(|p, q| q.0.total_cmp(&p.0));
    let (mut used_a, mut used_b) = (BTreeSet::new(), BTreeSet::new());
    for (_, i, j) in scored {
        if used_a.contains(&i) || used_b.contains(&j) {
            continue;
        }
        used_a.insert(i);
        used_b.insert(j);
        paired.insert(a[i].1.clone());
        paired.insert(b[j].1.clone());
    }
    paired
}

/// Antonyms by the table ("hot" / "cold"), by opposite prefixes ("overcook" /
/// "undercook") or by a negating prefix ("safe" / "unsafe").
fn opposite_words(x: &str, y: &str) -> bool {
    let forms = |w: &str| -> Vec<String> {
        let mut f = vec![w.to_string(), stem(w), singular(w)];
        push_suffix_bases(w, &["ing", "ed", "d", "er", "est", "s"], &mut f);
        f
    };
    let (fx, fy) = (forms(x), forms(y));
    let opposites = &lexicon().opposites;
    let table = fx.iter().any(|f| {
        opposites
            .get(f.as_str())
            .is_some_and(|qs| qs.iter().any(|q| fy.iter().any(|g| g == q)))
    });
    let prefixed = OPPOSITE_PREFIXES.iter().any(|(p, q)| {
        let swap = |u: &str, v: &str| {
            u.strip_prefix(p)
                .zip(v.strip_prefix(q))
                .is_some_and(|(r, t)| r == t)
        };
        swap(x, y) || swap(y, x)
    });
    let negated = NEGATING_PREFIXES.iter().chain(&["de"]).any(|p| {
        x.strip_prefix(p).is_some_and(|r| r == y) || y.strip_prefix(p).is_some_and(|r| r == x)
    });
    table || prefixed || negated
}

/// A word outside the common vocabulary counts this many times among the
/// unexplained.
const RARE_WORD_WEIGHT: usize = 2;

/// At most this many common words added on one side with nothing replaced.
const ONE_SIDED_ALLOWANCE: usize = 2;

/// How many common words may stay unexplained in a rewording: none below 0.70
/// similarity, then one more every 0.015, at most 9 (and never more than the
/// content words of the two sides).
fn rewording_allowance(similarity: f32) -> usize {
    if similarity.is_nan() || similarity < 0.70 {
        return 0;
    }
    (((similarity.min(1.0) - 0.70) / 0.015) as usize + 1).min(9)
}

/// A word of the embedding model's vocabulary (about 23,000 whole English words), in
/// some inflection: common enough that a rewording may swap it. Names, jargon,
/// identifiers and rare words are not.
fn is_common(raw: &str) -> bool {
    let lex = lexicon();
    let w = raw.trim_end_matches("'s");
    let mut forms = vec![w.to_string(), singular(w)];
    push_suffix_bases(w, &["ing", "ed", "d", "est", "er", "ly", "s"], &mut forms);
    forms.iter().any(|v| lex.rank.contains_key(v.as_str()))
}

/// Plural to singular, crudely: "cities" → "city", "boxes" → "box", "dogs" → "dog".
fn singular(w: &str) -> String {
    let w = w.trim_end_matches("'s").trim_end_matches('\'');
    if w.chars().count() <= 3 || w.ends_with("ss") || w.ends_with("us") || w.ends_with("is") {
        return w.to_string();
    }
    if let Some(b) = w.strip_suffix("ies") {
        return format!("{b}y");
    }
    for suf in ["ches", "shes", "xes", "sses"] {
        if let Some(b) = w.strip_suffix(suf) {
            return format!("{b}{}", &suf[..suf.len() - 2]);
        }
    }
    w.strip_suffix('s').unwrap_or(w).to_string()
}

/// Pairs off the same word in another form across the sides: a name written in
/// lowercase ("Chrome" / "chrome"), singular and plural ("card" / "cards"). Returns
/// what is left and how many singular/plural changes were paired off.
fn fold_variants(
    mut a: Vec<Leftover>,
    mut b: Vec<Leftover>,
    proper_a: &BTreeSet<String>,
    proper_b: &BTreeSet<String>,
) -> (Vec<Leftover>, Vec<Leftover>, usize) {
    let key = |raw: &str| canonical(&singular(&fold_accents(raw)));
    let mut number_changes = 0;
    let mut i = 0;
    while i < a.len() {
        let ra = a[i].1.clone();
        let found = b.iter().position(|(_, rb)| {
            // Two names differ when they differ at all ("Alien" / "Aliens"), but
            // for a possessive ("Canada" / "Canada's").
            (!(proper_a.contains(&ra) && proper_b.contains(rb))
                || ra.trim_end_matches("'s") == rb.trim_end_matches("'s"))
                && (key(&ra) == key(rb)
                    || american(&ra) == american(rb)
                    || transliterate(&ra) == transliterate(rb)
                    || derived_form(&key(&ra), &key(rb)))
        });
        if let Some(j) = found {
            let rb = &b[j].1;
            if (singular(&ra) == ra.trim_end_matches("'s"))
                != (singular(rb) == rb.trim_end_matches("'s"))
            {
                number_changes += 1;
            }
            a.remove(i);
            b.remove(j);
        } else {
            i += 1;
        }
    }
    (a, b, number_changes)
}

/// Suffixes that derive one word from another without changing what it names:
/// "dehydrat(ion)" / "dehydrat(ed)", "fonctionn(ement)", "configur(ation)".
const DERIVATIONAL_SUFFIXES: &[&str] = &[
    "at", "ate", "ation", "ion", "ions", "ment", "ement", "ements", "al", "ally", "ic", "ical",
    "ive", "ness", "ity", "ing", "ed", "able",
];

/// One stem is the other plus a derivational suffix, and the shorter has at least
/// five letters (so "count" / "country" or "port" / "portal" stay different words).
fn derived_form(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short.chars().count() >= 5
        && long
            .strip_prefix(short)
            .is_some_and(|rest| DERIVATIONAL_SUFFIXES.contains(&rest))
}

/// Drops words that are the other request's words spelled another way: a typo of
/// any of its words, even a filler ("reccomend" / "recommend"), or two of its words
/// written as one ("checkin" / "check-in", "login" / "log in").
fn drop_spelling_variants(side: Vec<Leftover>, own: &str, other: &str) -> Vec<Leftover> {
    let words: Vec<String> = tokenize(other).into_iter().map(|t| t.text).collect();
    let own: Vec<String> = tokenize(own).into_iter().map(|t| t.text).collect();
    side.into_iter()
        .filter(|(_, raw)| {
            let typo = words.iter().any(|w| typo_of(raw, w));
            let joined = words.windows(2).any(|p| {
                let (x, y) = (&p[0], &p[1]);
                x.len() >= 3 && (*raw == format!("{x}{y}") || *raw == format!("{x}-{y}"))
            });
            // Either half of a word the other side writes as one.
            let half = own.windows(2).any(|p| {
                (p[0] == *raw || p[1] == *raw)
                    && raw.len() >= 3
                    && words.iter().any(|w| *w == format!("{}{}", p[0], p[1]))
            });
            !typo && !joined && !half
        })
        .collect()
}

/// British spelling to American: "colour" → "color", "organise" → "organize",
/// "theatre" → "theater", "catalogue" → "catalog", "travelled" → "traveled".
fn american(w: &str) -> String {
    let mut w = w.to_string();
    for (gb, us) in [
        ("our", "or"),
        ("isation", "ization"),
        ("ise", "ize"),
        ("ising", "izing"),
        ("ised", "ized"),
        ("yse", "yze"),
        ("tre", "ter"),
        ("tres", "ters"),
        ("ogue", "og"),
        ("ence", "ense"),
        ("lled", "led"),
        ("lling", "ling"),
    ] {
        if let Some(stem) = w.strip_suffix(gb) {
            if stem.chars().count() >= 3 {
                w = format!("{stem}{us}");
                break;
            }
        }
    }
    // "colour" inside a longer word: "colourful", "favourite", "behaviours".
    if w.contains("our") && !w.starts_with("our") && !w.contains("ourn") && !w.ends_with("ours") {
        let i = w.find("our").unwrap_or(0);
        if i >= 3 {
            w.replace_range(i..i + 3, "or");
        }
    }
    w
}

/// "où" → "ou", "café" → "cafe".
fn fold_accents(w: &str) -> String {
    w.chars()
        .map(|c| match c {
            'à' | 'á' | 'â' | 'ä' | 'ã' | 'å' => 'a',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ò' | 'ó' | 'ô' | 'ö' | 'õ' => 'o',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            'ñ' => 'n',
            c => c,
        })
        .collect()
}

/// German without umlauts: "löschen" → "loeschen", "Straße" → "strasse".
fn transliterate(w: &str) -> String {
    w.replace('ä', "ae")
        .replace('ö', "oe")
        .replace('ü', "ue")
        .replace('ß', "ss")
}

/// What a request asks to be done with its subject, by the words that name it. Two
/// requests that ask for different operations on the same thing ("summarize this
/// article" / "translate this article", "define 'metaphor'" / "give an example of a
/// metaphor") need different answers however alike they read.
const TASKS: &[(&str, &str)] = &[
    ("summarize", "summarize"),
    ("summarise", "summarize"),
    ("summary", "summarize"),
    ("summaries", "summarize"),
    ("recap", "summarize"),
    ("tldr", "summarize"),
    ("translate", "translate"),
    ("translation", "translate"),
    ("explain", "explain"),
    ("explanation", "explain"),
    ("describe", "explain"),
    ("description", "explain"),
    ("define", "define"),
    ("definition", "define"),
    ("example", "example"),
    ("examples", "example"),
    ("synonym", "synonym"),
    ("synonyms", "synonym"),
    ("antonym", "antonym"),
    ("antonyms", "antonym"),
    ("pronounce", "pronounce"),
    ("pronunciation", "pronounce"),
    ("list", "list"),
    ("enumerate", "list"),
    ("compare", "compare"),
    ("comparison", "compare"),
    ("contrast", "compare"),
    ("proofread", "correct"),
    ("correct", "correct"),
    ("rewrite", "rewrite"),
    ("rephrase", "rewrite"),
    ("paraphrase", "rewrite"),
    ("reword", "rewrite"),
    ("shorten", "shorten"),
    ("expand", "expand"),
    ("elaborate", "expand"),
    ("simplify", "simplify"),
    ("outline", "outline"),
    ("critique", "critique"),
    ("review", "critique"),
    ("analyze", "analyze"),
    ("analyse", "analyze"),
    ("analysis", "analyze"),
    ("calculate", "calculate"),
    ("compute", "calculate"),
    ("prove", "prove"),
    ("proof", "prove"),
    ("debug", "debug"),
    ("refactor", "refactor"),
    ("optimize", "optimize"),
    ("optimise", "optimize"),
    ("write", "write"),
    ("draft", "write"),
    ("compose", "write"),
    ("analogy", "analogy"),
    ("analogies", "analogy"),
    ("count", "count"),
    ("tally", "count"),
    ("sum", "sum"),
    ("average", "average"),
    ("avg", "average"),
    ("median", "median"),
];

/// Tasks that a request cannot gain on one side without changing what is asked
/// ("what does 'ephemeral' mean?" / "use 'ephemeral' in a sentence"). Others, such
/// as "explain" or "summarize", often just make a question's request explicit.
const ADDED_TASKS: &[&str] = &["example", "synonym", "antonym", "pronounce", "analogy"];

/// The tasks named by a side's unexplained words, judged on the word as written,
/// inflected ("summarized", "translating") or not.
fn tasks_of(side: &[Leftover], all_words: &BTreeSet<String>) -> BTreeSet<&'static str> {
    let mut out = BTreeSet::new();
    for l in side {
        let w = l.1.as_str();
        // A question frame ("explain", "describe") names no task of its own; "count"
        // frames a question too, but not against "sum".
        if is_frame(l) && !matches!(w, "count" | "counts" | "counted" | "counting") {
            continue;
        }
        let mut forms = vec![w.to_string()];
        push_suffix_bases(w, &["ing", "ed", "d", "s", "es"], &mut forms);
        if let Some(t) = forms
            .iter()
            .find_map(|f| TASKS.iter().find(|(w, _)| w == f).map(|(_, t)| *t))
        {
            out.insert(t);
        }
    }
    // "Use it in a sentence": an example asked for.
    let has = |w: &str| side.iter().any(|(_, raw)| raw == w);
    if has("sentence") && all_words.contains("use") {
        out.insert("example");
    }
    // How fine-grained the answer is: "line by line", "step by step", "at a high
    // level".
    if all_words.contains("by") {
        if has("line") {
            out.insert("line by line");
        }
        if has("step") || has("steps") {
            out.insert("step by step");
        }
    }
    if (has("level") && (all_words.contains("high") || all_words.contains("low")))
        || ((has("high") || has("low")) && all_words.contains("level"))
    {
        out.insert("level of detail");
    }
    out
}

/// Words that only agree with a subject's number ("was" / "were"): a plural that
/// changes them still changes one slot.
fn agreement(w: &str) -> &str {
    match w {
        "are" => "is",
        "were" => "was",
        "have" => "has",
        "do" => "does",
        _ => w,
    }
}

/// One slot changed and everything around it equal: the common start and end of the
/// two word sequences (verbs that only agree in number taken as equal) cover at
/// least half of the longer one.
fn minimal_pair(a: &str, b: &str) -> bool {
    let norm = |s: &str| -> Vec<String> {
        tokenize(s)
            .into_iter()
            .map(|t| agreement(&t.text).to_string())
            .collect()
    };
    let (ta, tb) = (norm(a), norm(b));
    let pre = ta.iter().zip(&tb).take_while(|(x, y)| x == y).count();
    let suf = ta[pre..]
        .iter()
        .rev()
        .zip(tb[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    2 * (pre + suf) >= ta.len().max(tb.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(a: &str, b: &str) -> Option<&'static str> {
        verify(a, b).err().map(|m| m.kind)
    }

    /// The guard that refuses the pair at this similarity, if any.
    fn kind_at(a: &str, b: &str, sim: f32) -> Option<&'static str> {
        verify_at(a, b, sim).err().map(|m| m.kind)
    }

    #[test]
    fn the_issue_look_alikes_are_misses() {
        assert_eq!(
            kind("What is 12% of 250?", "What is 12% of 260?"),
            Some("number")
        );
        assert_eq!(
            kind("population of Norway", "population of Sweden"),
            Some("content")
        );
        assert_eq!(
            kind("snacks to eat before a run", "snacks to avoid before a run"),
            Some("antonym")
        );
        assert_eq!(
            kind(
                "Is this grammatically correct?",
                "Is this grammatically incorrect?"
            ),
            Some("negation")
        );
        assert_eq!(
            kind("Is a square a rectangle?", "Is a rectangle a square?"),
            Some("direction")
        );
        assert_eq!(
            kind(
                "Flights from London to New York",
                "Flights from New York to London"
            ),
            Some("direction")
        );
        assert_eq!(
            kind("Who directed Alien?", "Who directed Aliens?"),
            Some("content")
        );
        assert_eq!(
            kind("train from Berlin to Paris", "train from Paris to Berlin"),
            Some("direction")
        );
        assert_eq!(
            kind("upgrade to Postgres 16", "upgrade to Postgres 13"),
            Some("number")
        );
        assert_eq!(
            kind("say this in Dutch", "say this in Danish"),
            Some("language")
        );
        assert_eq!(
            kind("how do I enable 2FA", "how do I disable 2FA"),
            Some("antonym")
        );
        assert_eq!(
            kind("convert 5 miles to km", "convert 5 km to miles"),
            Some("direction")
        );
        assert_eq!(
            kind("weather tomorrow in Oslo", "weather today in Oslo"),
            Some("datetime")
        );
    }

    #[test]
    fn surface_variants_are_hits() {
        for (a, b) in [
            ("How do I reset my password?", "how do i reset my pasword"),
            (
                "What are your opening hours?",
                "what are your opening hours??",
            ),
            (
                "Can I return an item without a receipt?",
                "can i return an item without a reciept",
            ),
            (
                "What's the capital of Australia?",
                "what is the capital of australia",
            ),
            (
                "How do I log in to my account?",
                "How do I login to my account?",
            ),
            (
                "how long does shipping take",
                "How long does delivery take?",
            ),
        ] {
            assert_eq!(verify(a, b), Ok(()), "{a} / {b}");
        }
    }

    #[test]
    fn tokenizer_keeps_numbers_and_versions() {
        let t: Vec<String> = tokenize("Python 3.12 vs 3.8, costs $1,000 (12%) at 10:30 -> c++ c#")
            .into_iter()
            .map(|t| t.text)
            .collect();
        assert_eq!(
            t,
            vec![
                "python", "3.12", "vs", "3.8", "costs", "$", "1000", "12", "%", "at", "10:30",
                "->", "c++", "c#"
            ]
        );
    }

    #[test]
    fn typo_matching_is_careful() {
        assert!(typo_of("password", "pasword"));
        assert!(typo_of("receipt", "reciept"));
        assert!(!typo_of("austria", "australia"));
        assert!(!typo_of("cat", "car"));
    }

    #[test]
    fn rewordings_pass_with_enough_similarity_and_slot_changes_never_do() {
        // A rewording: changes in several places, common words only.
        let (a, b) = (
            "How can I reduce stress at work?",
            "What are some ways to lower stress at work?",
        );
        assert_eq!(kind_at(a, b, 0.90), None);
        assert_eq!(kind_at(a, b, 0.70), Some("content"));
        // One slot changed, the rest equal: a miss at any similarity.
        assert_eq!(
            kind_at(
                "Tell me a joke about cats.",
                "Tell me a pun about cats.",
                0.99
            ),
            Some("content")
        );
        // A name or a rare word added on one side only.
        assert_eq!(
            kind_at(
                "Give me a lasagna recipe.",
                "What's a good vegan recipe for lasagna?",
                0.95
            ),
            Some("content")
        );
        // A clause moved to the front is no reversed relation.
        assert_eq!(
            kind_at(
                "If I cancel today, will I get a refund?",
                "Will I get a refund if I cancel today?",
                0.99
            ),
            None
        );
        assert_eq!(
            kind_at(
                "train from Berlin to Paris",
                "train from Paris to Berlin",
                0.99
            ),
            Some("direction")
        );
    }

    #[test]
    fn word_order_alone_is_no_reversed_relation() {
        // Reworded with the words moved around: no relation changed sides.
        for (a, b, sim) in [
            (
                "How do I center a div horizontally with CSS?",
                "What's the CSS to horizontally center a div element?",
                0.95,
            ),
            (
                "How can I check which version of Node is installed?",
                "What's the command to see my installed Node.js version?",
                0.81,
            ),
        ] {
            assert_eq!(kind_at(a, b, sim), None, "{a} / {b}");
        }
        // The same words with the two sides of a relation swapped still miss.
        for (a, b) in [
            (
                "Does vitamin D help absorb calcium?",
                "Does calcium help absorb vitamin D?",
            ),
            (
                "Should the buyer pay the seller's closing costs?",
                "Should the seller pay the buyer's closing costs?",
            ),
            (
                "Benchmarks showing Rust beating Go",
                "Benchmarks showing Go beating Rust",
            ),
        ] {
            assert_eq!(kind_at(a, b, 0.99), Some("direction"), "{a} / {b}");
        }
    }

    #[test]
    fn comparisons_read_the_same_both_ways() {
        for (a, b) in [
            (
                "What's the difference between a Roth IRA and a traditional IRA?",
                "How does a traditional IRA differ from a Roth IRA?",
            ),
            (
                "Baking soda and baking powder: how are they different?",
                "How do baking powder and baking soda differ from each other?",
            ),
            (
                "let vs const in JavaScript - when should I use which?",
                "JavaScript: how does const differ from let, and when is each appropriate?",
            ),
        ] {
            assert_eq!(kind_at(a, b, 0.95), None, "{a} / {b}");
        }
        // A one-way `from`/`to`/`than` next to a comparison still counts.
        for (a, b) in [
            ("train from Berlin to Paris", "train from Paris to Berlin"),
            (
                "Compare flights from London to Oslo",
                "Compare flights from Oslo to London",
            ),
            (
                "Is Canada bigger than the United States?",
                "Is the United States bigger than Canada?",
            ),
        ] {
            assert_eq!(kind_at(a, b, 0.99), Some("direction"), "{a} / {b}");
        }
    }

    #[test]
    fn relations_end_at_the_end_of_a_sentence() {
        // "to see" in one sentence, "to go" in the next: nothing swapped around `to`.
        let (a, b) = (
            "I'd like to see the northern lights. What are the best places to go?",
            "Where should I go to see the northern lights?",
        );
        assert_ne!(kind_at(a, b, 0.95), Some("direction"));
        assert_eq!(
            kind_at(
                "Flights from London to Oslo. Any deals?",
                "Flights from Oslo to London. Any deals?",
                0.99
            ),
            Some("direction")
        );
    }

    #[test]
    fn numbers_come_from_numerals_not_from_names_or_adverbs() {
        // The same number written another way.
        for (a, b) in [
            (
                "What's the 50/30/20 budgeting rule?",
                "What's the 50-30-20 budgeting rule?",
            ),
            (
                "What is the derivative of x squared?",
                "What is the derivative of x^2?",
            ),
            (
                "Convert 3/8 to a decimal.",
                "Convert three eighths to a decimal.",
            ),
            (
                "Convert this list to a set: [1,2,2,3]",
                "convert this list to a set: [1, 2, 2, 3]",
            ),
        ] {
            assert_eq!(kind_at(a, b, 0.99), None, "{a} / {b}");
        }
        // ... and different numbers still miss.
        for (a, b) in [
            ("Convert 3/8 to a decimal.", "Convert 3-8 to a decimal."),
            (
                "Convert 3/8 to a decimal.",
                "Convert three quarters to a decimal.",
            ),
            (
                "What is the derivative of x^2?",
                "What is the derivative of x^3?",
            ),
            ("Sort the list [1,2,2,3]", "Sort the list [1,2,3]"),
            ("Is 1,000 a lot?", "Is 1,500 a lot?"),
            (
                "Is the museum free on the first Sunday of the month?",
                "Is the museum free on the second Sunday of the month?",
            ),
            ("Take the pill twice a day", "Take the pill once a day"),
        ] {
            assert_eq!(kind_at(a, b, 0.99), Some("number"), "{a} / {b}");
        }
        // A weak number word ("first" as an adverb, "twice", "pair") decides nothing
        // against a side without one of its kind; the word is judged as a word.
        for (a, b) in [
            (
                "Is it safe to take ibuprofen before eating?",
                "Is it safe to take ibuprofen first, before eating?",
            ),
            (
                "I was charged twice: I placed one order and see two identical charges.",
                "I see two identical charges for a single order.",
            ),
            (
                "How do I generate an SSH key?",
                "What's the command to create a new SSH key pair?",
            ),
        ] {
            assert_ne!(kind_at(a, b, 0.99), Some("number"), "{a} / {b}");
        }
        // ... but an ordinal added on one side still misses, as a word.
        for (a, b) in [
            (
                "What is the second largest city in France?",
                "What is the largest city in France?",
            ),
            (
                "Who was the first person to walk on the Moon?",
                "Who has walked on the Moon?",
            ),
        ] {
            assert_eq!(kind_at(a, b, 0.99), Some("content"), "{a} / {b}");
        }
        // Identifiers with digits are names: compared as written, never as typos.
        assert_eq!(
            kind_at("How do I turn on 2FA?", "How do I turn on 2FA", 0.99),
            None
        );
        for (a, b) in [
            (
                "Is the Galaxy S23 waterproof?",
                "Is the Galaxy S21 waterproof?",
            ),
            ("Encode the video as h264", "Encode the video as h265"),
            ("Does win10 support this?", "Does win11 support this?"),
        ] {
            assert_eq!(kind_at(a, b, 0.99), Some("content"), "{a} / {b}");
        }
        assert_eq!(
            kind_at("Run 5km today", "Run 10km today", 0.99),
            Some("number")
        );
    }

    #[test]
    fn negations_are_read_where_they_are() {
        for (a, b) in [
            (
                "Why did my bread not rise?",
                "What would cause my bread dough to fail to rise?",
            ),
            (
                "My order hasn't arrived yet, what should I do?",
                "my order hasnt arrived yet what should i do",
            ),
            ("I'm unable to log in", "I can't log in"),
        ] {
            assert_eq!(kind_at(a, b, 0.9), None, "{a} / {b}");
        }
        // Not negations: a place left ("out of a carpet"), a Spanish article ("un").
        assert_eq!(features("What gets red wine out of a carpet?").negations, 0);
        assert_eq!(
            features("¿A qué se refiere un error HTTP 500?").negations,
            0
        );
        // Real polarity flips still miss.
        for (a, b) in [
            ("Why did my bread rise?", "Why did my bread fail to rise?"),
            ("my order has arrived", "my order hasnt arrived"),
            ("Is the PS5 out of stock?", "Is the PS5 in stock?"),
            ("How do I un-install Zoom?", "How do I install Zoom?"),
            ("¿Es un error?", "¿No es un error?"),
        ] {
            assert_eq!(kind_at(a, b, 0.99), Some("negation"), "{a} / {b}");
        }
    }

    #[test]
    fn derived_forms_pair_off_but_prefixes_do_not() {
        assert!(derived_form("dehydr", "dehydrat"));
        assert!(derived_form("fonctionnement", "fonctionn"));
        assert!(!derived_form("count", "country"));
        assert!(!derived_form("port", "portal"));
        assert!(!derived_form("light", "lighter"));
        assert!(!derived_form("sweden", "sweden"));
    }

    #[test]
    fn variants_of_one_word_pair_off() {
        assert_eq!(verify("Is Chrome safe?", "is chrome safe"), Ok(()));
        assert_eq!(
            verify("Can my dog eat grapes?", "Can my dogs eat grapes?")
                .err()
                .map(|m| m.kind),
            Some("content")
        );
        assert_eq!(
            verify(
                "Wie kann ich mein Konto löschen?",
                "wie kann ich mein konto loeschen"
            ),
            Ok(())
        );
        assert_eq!(
            verify("Where is my refund?", "where's my refund???"),
            Ok(())
        );
        assert_eq!(
            verify(
                "Display the size in kilobytes.",
                "Display the size in kilobits."
            )
            .err()
            .map(|m| m.kind),
            Some("unit")
        );
    }

    #[test]
    fn a_negation_decides_only_against_its_word_said_plainly() {
        // The negated word is on the other side, said plainly: polarity flipped.
        for (a, b) in [
            (
                "Foods that contain gluten",
                "Foods that don't contain gluten",
            ),
            (
                "Can I run the dishwasher with detergent?",
                "Can I run the dishwasher without detergent?",
            ),
            (
                "Is it safe to eat raw eggs?",
                "Is it not safe to eat raw eggs?",
            ),
        ] {
            assert_eq!(kind_at(a, b, 0.99), Some("negation"), "{a} / {b}");
        }
        // A negation that is part of a rewording, or a tag that negates nothing.
        for (a, b) in [
            (
                "How do I check if an array is empty in JavaScript?",
                "In JavaScript, how do I check whether an array has no elements?",
            ),
            (
                "Is it worth paying off my mortgage early?",
                "Should I pay off my mortgage early or not?",
            ),
        ] {
            assert_ne!(kind_at(a, b, 0.95), Some("negation"), "{a} / {b}");
        }
    }

    #[test]
    fn another_task_or_question_kind_on_the_same_subject_misses() {
        for (a, b) in [
            (
                "Summarize this article in bullet points.",
                "Translate this article into bullet points.",
            ),
            (
                "Define the word 'metaphor'.",
                "Give me an example of a metaphor.",
            ),
            (
                "What does 'ephemeral' mean?",
                "Use 'ephemeral' in a sentence.",
            ),
            (
                "Explain this code line by line.",
                "Explain what this code does at a high level.",
            ),
            (
                "SQL: count the number of orders per customer",
                "SQL: sum the order amounts per customer",
            ),
            (
                "Who painted the Mona Lisa?",
                "When was the Mona Lisa painted?",
            ),
            ("Where was Mozart born?", "When was Mozart born?"),
        ] {
            assert_eq!(kind_at(a, b, 0.99), Some("content"), "{a} / {b}");
        }
        // The same task said two ways, and a clause opened by "when".
        for (a, b, sim) in [
            (
                "Summarize the causes of World War I.",
                "Give me a summary of what caused World War I.",
                0.9,
            ),
            (
                "How many rest days per week should I take when lifting weights?",
                "When lifting weights, how many rest days per week should I take?",
                0.97,
            ),
        ] {
            assert_eq!(kind_at(a, b, sim), None, "{a} / {b}");
        }
    }

    #[test]
    fn cause_and_motion_have_a_direction() {
        for (a, b) in [
            (
                "Does inflation cause interest rates to rise?",
                "Do rising interest rates cause inflation?",
            ),
            (
                "How do I copy files from a Docker container to the host?",
                "How do I copy files from the host into a Docker container?",
            ),
        ] {
            assert_eq!(kind_at(a, b, 0.99), Some("direction"), "{a} / {b}");
        }
        // A cause said once marks no relation to swap.
        assert_ne!(
            kind_at("What causes the seasons?", "Why do we have seasons?", 0.95),
            Some("direction")
        );
    }

    #[test]
    fn everyday_wording_is_not_a_quantity_time_unit_or_language() {
        for (a, b) in [
            // British and American spelling.
            (
                "What colour is a ripe mango?",
                "What color is a ripe mango?",
            ),
            (
                "How do I organise my closet?",
                "How do I organize my closet?",
            ),
            // "last" as the most recent one; a rate said two ways; an age.
            (
                "How do I undo my last commit in git?",
                "How do I undo the most recent commit in git?",
            ),
            (
                "How much water should I drink per day?",
                "How much water should I drink daily?",
            ),
            (
                "I'm 40 and want to start running. How should I begin?",
                "I'm 40 years old and want to start running. How should I begin?",
            ),
            // A language its tools imply.
            (
                "How do I install a package with pip?",
                "How do I install a Python package with pip?",
            ),
            // "into one" and "two times"; pronoun contractions.
            (
                "How do I merge two dictionaries in Python?",
                "How do I merge two dictionaries into one in Python?",
            ),
            (
                "Why does my useEffect run twice?",
                "Why does my useEffect run two times?",
            ),
            (
                "I've started a new job. Write a LinkedIn post about it.",
                "I started a new job. Write a LinkedIn post about it.",
            ),
        ] {
            assert_eq!(kind_at(a, b, 0.9), None, "{a} / {b}");
        }
        // "go" the verb and a nationality are no languages.
        for (a, b) in [
            (
                "When is the best time to go to Iceland?",
                "When should I travel to Iceland?",
            ),
            (
                "Do I need a visa for Japan as a US citizen?",
                "As an American, do I need a visa for Japan?",
            ),
        ] {
            assert_ne!(kind_at(a, b, 0.9), Some("language"), "{a} / {b}");
        }
        // "a bit" is no unit.
        assert_ne!(
            kind_at(
                "I'm a bit overweight. How should I start running?",
                "I am somewhat overweight. How should I start running?",
                0.9
            ),
            Some("unit")
        );
        // ... while the real thing still decides.
        assert_eq!(
            kind_at(
                "Is a 32 bit build faster?",
                "Is a 64 bit build faster?",
                0.99
            ),
            Some("number")
        );
        assert_eq!(
            kind_at("Write this in Go", "Write this in Rust", 0.99),
            Some("language")
        );
        assert_eq!(
            kind_at(
                "Proofread this for American English spelling.",
                "Proofread this for British English spelling.",
                0.99
            ),
            Some("language")
        );
        assert_eq!(
            kind_at(
                "What did I spend last week?",
                "What did I spend this week?",
                0.99
            ),
            Some("datetime")
        );
        assert_eq!(
            kind_at(
                "Who was the band's drummer?",
                "Who were the band's drummers?",
                0.99
            ),
            Some("content")
        );
    }

    #[test]
    fn surface_variants_are_the_same_words_up_to_typos_and_spelling() {
        assert!(surface_variant(
            "Where can I find my order history?",
            "where can i find my order histroy"
        ));
        assert!(surface_variant(
            "What is the theatre district in New York called?",
            "what is the theater district in new york called"
        ));
        assert!(!surface_variant(
            "Where can I find my order history?",
            "Where can I find my order number?"
        ));
        assert!(!surface_variant("Hi there", "Hi thre"));
    }

    #[test]
    fn roles_and_auxiliaries_that_swap_a_relation() {
        for (a, b, kind) in [
            (
                "Resume tips for someone who has management experience",
                "Resume tips for someone who doesn't have management experience",
                "negation",
            ),
            (
                "Who did Germany beat in the 2014 World Cup final?",
                "Who beat Germany in the 2014 World Cup final?",
                "direction",
            ),
            (
                "My brother owes me $500 and won't pay it back. What can I do?",
                "I owe my brother $500 and can't pay it back. What can I do?",
                "direction",
            ),
            (
                "How do I redirect www to non-www in Nginx?",
                "How do I redirect non-www to www in Nginx?",
                "direction",
            ),
            (
                "Who did Muhammad Ali defeat in 1974?",
                "Who defeated Muhammad Ali in 1974?",
                "direction",
            ),
            (
                "Who taught Aristotle?",
                "Who did Aristotle teach?",
                "direction",
            ),
        ] {
            assert_eq!(kind_at(a, b, 0.99), Some(kind), "{a} / {b}");
        }
        // Both sides negate the same word, each its own way; a side naming both
        // poles negates nothing of the other's.
        for (a, b) in [
            (
                "Explain what a neural network is to someone without a technical background.",
                "How would you explain what a neural network is to a non-technical person?",
            ),
            (
                "What are the pros and cons of electric cars?",
                "What are the advantages and disadvantages of electric cars?",
            ),
        ] {
            assert_ne!(kind_at(a, b, 0.95), Some("negation"), "{a} / {b}");
        }
    }

    #[test]
    fn a_lack_is_the_opposite_of_having_it() {
        // "X-free", "free of X", "X-less", "nonX", "without paying X" against
        // "contains / has / needs X": the answers are opposite.
        for (a, b) in [
            ("Is this gluten free?", "Does this contain gluten?"),
            (
                "Is the product dairy-free?",
                "Does the product contain dairy?",
            ),
            ("Is this sugar free?", "Does this have sugar?"),
            (
                "Is the dressing free of nuts?",
                "Does the dressing have nuts in it?",
            ),
            ("Are these grapes seedless?", "Do these grapes have seeds?"),
            ("Is this yogurt nonfat?", "Does this yogurt have fat?"),
            (
                "Is this jacket waterproof?",
                "Can water get through this jacket?",
            ),
            (
                "Is the battery replacement free of charge?",
                "Does the battery replacement cost anything?",
            ),
            (
                "Can I rent a car without showing a credit card?",
                "Do I need a credit card to rent a car?",
            ),
        ] {
            assert_eq!(kind_at(a, b, 0.99), Some("negation"), "{a} / {b}");
        }
        // The same lack said two ways; "free of charge" and "feel free" lack nothing
        // named before them; "stopped working" is "not working".
        for (a, b) in [
            ("Is this gluten free?", "Is this gluten-free?"),
            ("Is this gluten free?", "Does this have no gluten?"),
            ("Is the dressing nut-free?", "Is the dressing free of nuts?"),
            (
                "Does the hotel have free parking?",
                "Is parking at the hotel free of charge?",
            ),
            (
                "Feel free to tell me the opening hours",
                "What are the opening hours?",
            ),
            ("My printer stopped working", "My printer is not working"),
            (
                "How do I avoid roaming fees abroad?",
                "How do I use my phone abroad without paying roaming fees?",
            ),
        ] {
            assert_ne!(kind_at(a, b, 0.95), Some("negation"), "{a} / {b}");
        }
    }

    #[test]
    fn different_states_of_one_process_are_different_answers() {
        for (a, b) in [
            ("Is my order shipped?", "Is my order delivered?"),
            (
                "Has my refund been approved?",
                "Is my refund still pending?",
            ),
            (
                "Has my ticket been assigned?",
                "Has my ticket been resolved?",
            ),
            (
                "Is my appointment scheduled?",
                "Is my appointment completed?",
            ),
            (
                "Has my flight been booked?",
                "Am I checked in for my flight?",
            ),
            (
                "Was my timesheet submitted?",
                "Did my manager approve my timesheet?",
            ),
            (
                "Has the pull request been merged?",
                "Is the pull request deployed?",
            ),
        ] {
            assert_eq!(kind_at(a, b, 0.99), Some("state"), "{a} / {b}");
        }
        // One state said two ways, or a state the request says is not reached.
        for (a, b) in [
            ("Is my order shipped?", "Has my order shipped yet?"),
            (
                "Has my order been shipped?",
                "Has my order been dispatched?",
            ),
            (
                "The client hasn't paid my invoice for 60 days",
                "My invoice to the client is 60 days overdue",
            ),
        ] {
            assert_ne!(kind_at(a, b, 0.95), Some("state"), "{a} / {b}");
        }
    }

    #[test]
    fn text_given_to_work_on_is_compared_word_for_word() {
        assert_eq!(
            kind_at(
                "grammar check: your welcome to join us",
                "grammar check: you're welcome to join us",
                0.99
            ),
            Some("content")
        );
        assert_eq!(
            kind_at(
                "Translate \"I left it there\" to German",
                "Translate \"I left it their\" to German",
                0.99
            ),
            Some("content")
        );
        assert_eq!(
            kind_at(
                "translate to French: good morning",
                "Translate to French: Good morning.",
                0.99
            ),
            None
        );
    }

    #[test]
    fn texting_shorthand_is_no_language_or_unit() {
        for (a, b) in [
            (
                "What are the symptoms of burnout?",
                "what r the symptoms of burnout",
            ),
            (
                "How can I stop my glasses from fogging up with a mask?",
                "how can i stop my glasses from fogging up w/ a mask",
            ),
        ] {
            let k = verify_at(a, b, 0.97).err().map(|m| m.kind);
            assert!(!matches!(k, Some("language" | "unit")), "{a} / {b}: {k:?}");
        }
        assert_eq!(
            verify_at("Plot this in R", "Plot this in Python", 0.99)
                .err()
                .map(|m| m.kind),
            Some("language")
        );
    }
}
