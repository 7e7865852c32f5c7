package hl7

import "testing"

// benchADT is a synthetic 1.3 KB ADT^A01 (every name in it is made up).
const benchADT = "MSH|^~\\&|BENCHADT|BENCHHOSP|CAREBRIDGE|CB|20261124093000||ADT^A01^ADT_A01|B-00-0000001|P|2.5.1|||AL|NE\r" +
	"EVN|A01|20261124093000|||OPER01^OPERATOR^OLIVE\r" +
	"PID|1||MRN000000001^^^BENCHHOSP^MR~SSN000000000^^^SSA^SS||BENCHPATIENT^TESTY^Q^^^^L||19800101|F||2106-3^White^HL70005|1 MAIN ST^^SPRINGFIELD^IL^62701^USA^H||555-0100^PRN^PH|||M|NON|ACCT0000001\r" +
	"PD1|||BENCH CLINIC^^12345|1234^PRIMARY^PAT^^^DR\r" +
	"NK1|1|BENCHKIN^KIM|SPO|1 MAIN ST^^SPRINGFIELD^IL^62701|555-0101\r" +
	"PV1|1|I|4W^401^1^BENCHHOSP||||1234^ATTENDING^ALICE^^^DR|5678^REFERRING^ROB^^^DR|9012^CONSULT^CARL^^^DR|MED||||ADM|A0||3456^ADMITTING^ADA^^^DR|IN||||||||||||||||||||||||20261124090000\r" +
	"PV2|||CHEST PAIN\r" +
	"OBX|1|NM|8867-4^Heart rate^LN||72|/min^beats per minute^UCUM|60-100|N|||F\r" +
	"OBX|2|NM|8480-6^Systolic blood pressure^LN||120|mm[Hg]^mmHg^UCUM|90-140|N|||F\r" +
	"AL1|1|DA|70618^Penicillin^RXNORM|SV|HIVES\r" +
	"DG1|1||R07.9^Chest pain, unspecified^I10||20261124|A\r" +
	"IN1|1|PLAN01^BENCH PLAN|INS01|BENCH INSURANCE CO|1 INSURANCE WAY^^SPRINGFIELD^IL^62701||555-0199|GRP001|||||||BENCHPATIENT^TESTY|SEL|19800101\r"

func BenchmarkParseADTA01(b *testing.B) {
	data := []byte(benchADT)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseHeader(b *testing.B) {
	data := []byte(benchADT)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseHeader(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	m, err := Parse([]byte(benchADT))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := m.Get("PV1-7.2"); v.String() != "ATTENDING" {
			b.Fatal(v.String())
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	m, err := Parse([]byte(benchADT))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = m.Encode()
	}
}
