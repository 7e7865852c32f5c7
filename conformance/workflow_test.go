package conformance

func workflowCases() []testCase { return nil }
