package geo

// CountryCentroid returns a representative point for a country, by ISO
// 3166-1 alpha-2 code (upper case), for GeoIP records that carry a country
// but no precise coordinates. The points are rough geographic centres
// (about 1° precision): good enough to choose between regions hundreds of
// kilometres apart, not for anything finer.
func CountryCentroid(iso string) (Point, bool) {
	p, ok := countryCentroids[iso]
	return p, ok
}

// ContinentCentroid returns a representative point for a continent, by the
// two-letter code GeoIP2 uses (AF, AN, AS, EU, NA, OC, SA). The points lean
// toward where people live (Europe's is in central Europe, not the
// geographic centre in Lithuania) because they stand in for clients.
func ContinentCentroid(code string) (Point, bool) {
	p, ok := continentCentroids[code]
	return p, ok
}

// continentCentroids is read-only after initialisation.
var continentCentroids = map[string]Point{
	"AF": {2.1, 17.1},    // Africa
	"AN": {-82.9, 135.0}, // Antarctica
	"AS": {34.0, 100.0},  // Asia
	"EU": {50.0, 15.0},   // Europe
	"NA": {40.0, -97.0},  // North America
	"OC": {-25.0, 140.0}, // Oceania
	"SA": {-15.0, -60.0}, // South America
}

// countryCentroids is read-only after initialisation.
var countryCentroids = map[string]Point{
	// North and Central America, Caribbean
	"US": {39.8, -98.6}, "CA": {56.1, -106.3}, "MX": {23.6, -102.6},
	"GT": {15.8, -90.2}, "CR": {9.7, -83.8}, "PA": {8.5, -80.8},
	"CU": {21.5, -77.8}, "DO": {18.7, -70.2}, "PR": {18.2, -66.6},
	"JM": {18.1, -77.3},
	// South America
	"BR": {-14.2, -51.9}, "AR": {-38.4, -63.6}, "CL": {-35.7, -71.5},
	"CO": {4.6, -74.3}, "PE": {-9.2, -75.0}, "VE": {6.4, -66.6},
	"EC": {-1.8, -78.2}, "UY": {-32.5, -55.8}, "PY": {-23.4, -58.4},
	"BO": {-16.3, -63.6},
	// Europe
	"GB": {54.8, -2.7}, "IE": {53.4, -8.2}, "FR": {46.2, 2.2},
	"DE": {51.2, 10.4}, "NL": {52.1, 5.3}, "BE": {50.5, 4.5},
	"LU": {49.8, 6.1}, "CH": {46.8, 8.2}, "AT": {47.5, 14.6},
	"IT": {41.9, 12.6}, "ES": {40.5, -3.7}, "PT": {39.4, -8.2},
	"DK": {56.3, 9.5}, "NO": {60.5, 8.5}, "SE": {60.1, 18.6},
	"FI": {61.9, 25.7}, "IS": {64.9, -19.0}, "PL": {51.9, 19.1},
	"CZ": {49.8, 15.5}, "SK": {48.7, 19.7}, "HU": {47.2, 19.5},
	"RO": {45.9, 25.0}, "BG": {42.7, 25.5}, "GR": {39.1, 21.8},
	"RS": {44.0, 21.0}, "HR": {45.1, 15.2}, "SI": {46.2, 15.0},
	"UA": {48.4, 31.2}, "BY": {53.7, 28.0}, "RU": {61.5, 105.3},
	"LT": {55.2, 23.9}, "LV": {56.9, 24.6}, "EE": {58.6, 25.0},
	"AL": {41.2, 20.2}, "MT": {35.9, 14.4}, "CY": {35.1, 33.4},
	// Middle East
	"TR": {39.0, 35.2}, "IL": {31.0, 34.9}, "SA": {23.9, 45.1},
	"AE": {23.4, 53.8}, "QA": {25.4, 51.2}, "KW": {29.3, 47.5},
	"BH": {26.0, 50.6}, "JO": {30.6, 36.2}, "LB": {33.9, 35.9},
	"IR": {32.4, 53.7}, "IQ": {33.2, 43.7},
	// Africa
	"EG": {26.8, 30.8}, "ZA": {-30.6, 22.9}, "NG": {9.1, 8.7},
	"KE": {0.0, 37.9}, "MA": {31.8, -7.1}, "DZ": {28.0, 1.7},
	"TN": {33.9, 9.5}, "GH": {7.9, -1.0}, "ET": {9.1, 40.5},
	"TZ": {-6.4, 34.9}, "LY": {26.3, 17.2}, "SN": {14.5, -14.5},
	// Asia
	"IN": {20.6, 79.0}, "PK": {30.4, 69.3}, "BD": {23.7, 90.4},
	"LK": {7.9, 80.8}, "NP": {28.4, 84.1}, "BT": {27.5, 90.4},
	"CN": {35.9, 104.2}, "JP": {36.2, 138.3}, "KR": {35.9, 127.8},
	"TW": {23.7, 121.0}, "HK": {22.3, 114.2}, "MO": {22.2, 113.5},
	"SG": {1.35, 103.8}, "MY": {4.2, 102.0}, "TH": {15.9, 101.0},
	"VN": {14.1, 108.3}, "PH": {12.9, 121.8}, "ID": {-0.8, 113.9},
	"KZ": {48.0, 66.9}, "UZ": {41.4, 64.6}, "MN": {46.9, 103.8},
	// Oceania
	"AU": {-25.3, 133.8}, "NZ": {-40.9, 174.9}, "FJ": {-17.7, 178.1},
	"PG": {-6.3, 144.0},
}
