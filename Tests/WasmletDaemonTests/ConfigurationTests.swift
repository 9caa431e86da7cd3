import Foundation
import Testing
import WasmletTestSupport
@testable import WasmletDaemon

/// Configuration resolution: defaults per user, file, flags over file, clear errors.
@Suite struct ConfigurationTests {
    @Test func defaultsDependOnTheUser() {
        let root = DaemonConfiguration.defaults(uid: 0, environment: [:])
        #expect(root.socketPath == "/run/wasmlet/wasmlet.sock")
        #expect(root.stateDirectory == "/var/lib/wasmlet")
        #expect(root.shutdownGrace == .seconds(10))
        let xdg = DaemonConfiguration.defaults(
            uid: 1000, environment: ["HOME": "/home/u", "XDG_RUNTIME_DIR": "/run/user/1000", "XDG_STATE_HOME": "/home/u/.st"])
        #expect(xdg.socketPath == "/run/user/1000/wasmlet/wasmlet.sock")
        #expect(xdg.stateDirectory == "/home/u/.st/wasmlet")
        let plain = DaemonConfiguration.defaults(uid: 1000, environment: ["HOME": "/home/u"])
        #expect(plain.socketPath == "/home/u/.wasmlet/wasmlet.sock")
        #expect(plain.stateDirectory == "/home/u/.wasmlet/state")
    }

    /// What a SIGHUP reload cannot apply is named by its file key, so the log can say so.
    @Test func reloadNamesEverySettingItCannotApply() throws {
        let current = DaemonConfiguration.defaults(uid: 0, environment: [:])
        #expect(current.settingsNeedingRestart(toApply: current).isEmpty)
        var next = current
        next.logLevel = .debug
        next.shutdownGrace = .seconds(1)
        next.statusInterval = .seconds(5)
        #expect(current.settingsNeedingRestart(toApply: next).isEmpty, "these three are applied")
        next.metricsAddress = "127.0.0.1:9999"
        next.maxInstances = 3
        next.metricsPerInstance = !current.metricsPerInstance
        next.socketPath = "/tmp/other.sock"
        #expect(current.settingsNeedingRestart(toApply: next) == [
            "socket", "metrics_address", "metrics.per_instance", "limits.max_instances",
        ])
    }

    @Test func flagsOverrideTheFile() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/c.toml"
        try """
            socket = "/tmp/from-file.sock"
            state_dir = "/tmp/state-from-file"
            log_level = "warning"
            shutdown_grace = "3s"
            status_interval = "1m30s"
            metrics_address = "127.0.0.1:9464"
            [limits]
            max_instances = 7
            memory_budget = "2GiB"
            default_memory = 1048576
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let options = try DaemonOptions.parse(["--config", path, "--socket", "/tmp/flag.sock", "--shutdown-grace", "500ms"])
        let configuration = try DaemonConfiguration.resolve(options: options, uid: 0, environment: [:])
        #expect(configuration.socketPath == "/tmp/flag.sock")
        #expect(configuration.stateDirectory == "/tmp/state-from-file")
        #expect(configuration.logLevel == .warning)
        #expect(configuration.shutdownGrace == .milliseconds(500))
        #expect(configuration.statusInterval == .seconds(90))
        #expect(configuration.maxInstances == 7)
        #expect(configuration.memoryBudgetBytes == 2 << 30)
        #expect(configuration.defaultMemoryCapBytes == 1 << 20)
        #expect(configuration.metricsAddress == "127.0.0.1:9464")
    }

    @Test(arguments: [
        ("socket = 3", "key socket: expected a string"),
        ("socket = \"unterminated", "line 1"),
        ("[limits]\nmax_instance = 3", "unknown key limits.max_instance"),
        ("log_level = \"loud\"", "key log_level: unknown level"),
        ("[limits]\nmemory_budget = \"lots\"", "key limits.memory_budget"),
        ("[limits]\nmemory_admission = \"reserve\"", "key limits.memory_admission: unknown memory admission \"reserve\"; use committed"),
        ("[limits]\nmemory_admission = 1", "key limits.memory_admission: expected a string"),
        ("group = \"no-such-group-xyz\"", "group \"no-such-group-xyz\" does not exist"),
        ("[metrics]\nper_instances = true", "unknown key metrics.per_instances"),
        ("[metrics]\nper_instance = 1", "key metrics.per_instance: expected true or false"),
        ("[metrics]\nper_instance_limit = -1", "key metrics.per_instance_limit: must be at least 0"),
        // Durations need a unit (the file used to take bare seconds); sizes are ByteSize's.
        ("shutdown_grace = 10", "key shutdown_grace: 10 has no unit; write a string with one, e.g. \"10s\""),
        ("status_interval = 0.5", "key status_interval: 0.5 has no unit"),
        ("shutdown_grace = \"10\"", "key shutdown_grace: duration \"10\" has no unit; add a unit, e.g. 10ms or 10s"),
        ("shutdown_grace = \"-1s\"", "key shutdown_grace: duration \"-1s\" has a sign"),
        ("status_interval = \"0s\"", "key status_interval: must be more than 0"),
        ("status_interval = 0", "key status_interval: must be more than 0"),
        ("shutdown_grace = true", "key shutdown_grace: expected a duration"),
        ("[limits]\nmemory_budget = \"8GB\"", "key limits.memory_budget: \"8GB\" is ambiguous"),
        ("[limits]\ndefault_memory = \"99999999999T\"", "key limits.default_memory: size \"99999999999T\" is too large"),
        ("[limits]\ndefault_memory = 0", "key limits.default_memory: must be more than 0 bytes"),
        ("[http]\npoll = \"20ms\"", "key http.poll: must be at most 10ms"),
        ("[http]\npoll = 100", "key http.poll: 100 has no unit"),
        ("[http]\npolling = \"1ms\"", "unknown key http.polling; known keys here: http.poll"),
        ("http = 1", "key http: expected a table ([http])"),
        // Found by fuzz-config-toml: TOMLKit's parser aborted the process on these.
        ("[é]", "line 1, column 2: a non-ASCII character outside a string or comment"),
        ("socket = \"/run/ß\"\n[[ü]]", "line 2, column 3: a non-ASCII character"),
    ])
    func badFilesNameTheProblem(text: String, expected: String) throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/bad.toml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let options = try DaemonOptions.parse(["--config", path])
        #expect {
            _ = try DaemonConfiguration.resolve(options: options, uid: 0, environment: [:])
        } throws: { error in
            "\(error)".contains(expected)
        }
    }

    @Test func perInstanceMetricsFromFileAndFlags() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/m.toml"
        try "[metrics]\nper_instance = true\nper_instance_limit = 7\n".write(toFile: path, atomically: true, encoding: .utf8)
        let fromFile = try DaemonConfiguration.resolve(options: DaemonOptions.parse(["--config", path]), uid: 0, environment: [:])
        #expect(fromFile.metricsSettings == MetricsSettings(perInstance: true, perInstanceLimit: 7))
        let overridden = try DaemonConfiguration.resolve(
            options: DaemonOptions.parse(["--config", path, "--no-metrics-per-instance", "--metrics-per-instance-limit", "3"]),
            uid: 0, environment: [:])
        #expect(overridden.metricsSettings == MetricsSettings(perInstance: false, perInstanceLimit: 3))
        let defaults = try DaemonConfiguration.resolve(options: DaemonOptions.parse([]), uid: 0, environment: [:])
        #expect(defaults.metricsSettings == MetricsSettings(perInstance: false, perInstanceLimit: 500))
    }

    @Test func memoryAdmissionFromFileAndFlags() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/a.toml"
        try "[limits]\nmemory_admission = \"reserve-caps\"\n".write(toFile: path, atomically: true, encoding: .utf8)
        let fromFile = try DaemonConfiguration.resolve(options: DaemonOptions.parse(["--config", path]), uid: 0, environment: [:])
        #expect(fromFile.memoryAdmission == .reserveCaps)
        #expect(Daemon.runtimeConfiguration(fromFile.runtimeConfiguration).memoryAdmission == .reserveCaps)
        let overridden = try DaemonConfiguration.resolve(
            options: DaemonOptions.parse(["--config", path, "--memory-admission", "committed"]), uid: 0, environment: [:])
        #expect(overridden.memoryAdmission == .committed)
        // Unset, the runtime's default: committed.
        let defaults = try DaemonConfiguration.resolve(options: DaemonOptions.parse([]), uid: 0, environment: [:])
        #expect(defaults.memoryAdmission == nil)
        #expect(Daemon.runtimeConfiguration(defaults.runtimeConfiguration).memoryAdmission == .committed)
        let bad = try DaemonOptions.parse(["--memory-admission", "lazy"])
        #expect {
            _ = try DaemonConfiguration.resolve(options: bad, uid: 0, environment: [:])
        } throws: { error in
            "\(error)" == "--memory-admission: unknown memory admission \"lazy\"; use committed (count what guests commit) or reserve-caps (reserve each cap at create)"
        }
    }

    @Test func theExampleFileParses() throws {
        let file = try ConfigurationFile.load(path: repositoryRoot + "/deploy/wasmletd.toml")
        #expect(file.metricsAddress == "127.0.0.1:9464")
        #expect(file.metricsPerInstance == false)
        #expect(file.metricsPerInstanceLimit == 500)
        #expect(file.maxInstances == 10_000)
        #expect(file.memoryAdmission == .committed)
        #expect(file.shutdownGrace == .seconds(10))
        #expect(file.statusInterval == .seconds(5))
        #expect(file.memoryBudget == 8 << 30)
        #expect(file.defaultMemory == 128 << 20)
        #expect(file.httpPoll == .microseconds(100))
    }

    /// How long an HTTP event loop polls after an answer: a default that works, the file, the
    /// flag over both, and a ceiling.
    @Test func httpPollFromDefaultsFileAndFlags() throws {
        let defaults = try DaemonConfiguration.resolve(options: DaemonOptions.parse([]), uid: 0, environment: [:])
        #expect(defaults.httpPoll == .microseconds(100))
        let directory = try TemporaryDirectory()
        let path = directory.path + "/p.toml"
        try "[http]\npoll = \"250us\"\n".write(toFile: path, atomically: true, encoding: .utf8)
        let fromFile = try DaemonConfiguration.resolve(options: DaemonOptions.parse(["--config", path]), uid: 0, environment: [:])
        #expect(fromFile.httpPoll == .microseconds(250))
        let off = try DaemonConfiguration.resolve(options: DaemonOptions.parse(["--config", path, "--http-poll", "0"]), uid: 0, environment: [:])
        #expect(off.httpPoll == .zero)
        #expect(defaults.settingsNeedingRestart(toApply: fromFile) == ["http.poll"])
        #expect {
            _ = try DaemonConfiguration.resolve(options: DaemonOptions.parse(["--http-poll", "11ms"]), uid: 0, environment: [:])
        } throws: { error in
            "\(error)" == "--http-poll: must be at most 10ms (longer costs CPU and saves no wake-up)"
        }
        #expect {
            _ = try DaemonConfiguration.resolve(options: DaemonOptions.parse(["--http-poll", "100"]), uid: 0, environment: [:])
        } throws: { error in
            "\(error)".hasPrefix("--http-poll: duration \"100\" has no unit")
        }
    }

    @Test func badFlagsAreRefused() throws {
        for arguments in [
            ["--log-level", "loud"], ["--memory-budget", "huge"], ["--socket", "relative.sock"],
            ["--metrics-per-instance-limit=-2"], ["--memory-budget", "0"], ["--default-memory", "16MB"],
            ["--status-interval", "0"], ["--shutdown-grace=-1s"],
        ] {
            let options = try DaemonOptions.parse(arguments)
            #expect(throws: ConfigurationError.self, "\(arguments)") {
                _ = try DaemonConfiguration.resolve(options: options, uid: 0, environment: [:])
            }
        }
    }

    /// The flags take the same syntax as the file: a duration needs its unit (they used to take
    /// bare seconds), 0 is a grace of none.
    @Test func durationFlags() throws {
        let bare = try DaemonOptions.parse(["--shutdown-grace", "10"])
        #expect {
            _ = try DaemonConfiguration.resolve(options: bare, uid: 0, environment: [:])
        } throws: { error in
            "\(error)" == "--shutdown-grace: duration \"10\" has no unit; add a unit, e.g. 10ms or 10s"
        }
        let zero = try DaemonConfiguration.resolve(options: DaemonOptions.parse(["--shutdown-grace", "0"]), uid: 0, environment: [:])
        #expect(zero.shutdownGrace == .zero)
        let set = try DaemonConfiguration.resolve(
            options: DaemonOptions.parse(["--shutdown-grace", "1m", "--status-interval", "250ms"]), uid: 0, environment: [:])
        #expect(set.shutdownGrace == .seconds(60))
        #expect(set.statusInterval == .milliseconds(250))
    }
}
