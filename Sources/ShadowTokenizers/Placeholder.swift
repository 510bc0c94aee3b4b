// The tokenizer sources arrive in their own commits.
