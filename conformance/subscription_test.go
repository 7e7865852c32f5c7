package conformance

func subscriptionCases() []testCase { return nil }
