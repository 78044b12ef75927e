return await EphemeralOrleans.Agent.Cli.AgentCli.RunAsync(args);
