package conformance

func resourceSearchCases() []testCase { return nil }
