import Foundation

/// Whole-file writes that never leave a partial file: write beside the target, then rename.
/// Every failure is one line naming the path and the cause in words.
public enum AtomicFile {
    public static func write(_ data: Data, to path: String) throws {
        try write(to: path) { sink in try data.withUnsafeBytes { try sink($0) } }
    }

    /// Writes the file that `body` hands to its sink piece by piece, in order, so a large file
    /// never has to be whole in memory. An error of `body` is rethrown; either way nothing but a
    /// complete file ever appears at `path`.
    ///
    /// A symbolic link is followed (its target is replaced, the link stays); a character device,
    /// a named pipe or an open descriptor (`/dev/null`, a FIFO, `/dev/stdout`) is appended to in
    /// place, as renaming over it would replace the device with a file.
    public static func write(to path: String, _ body: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        // stat(2) follows the links as the kernel does: `/dev/stdout` into a pipe is a pipe, though
        // the link chain ends in "pipe:[N]", which is no path.
        var status = stat()
        if stat(path, &status) == 0 {
            switch status.st_mode & S_IFMT {
            case S_IFREG: break
            case S_IFDIR: throw ShadowError.failed("cannot write \(path): it is a directory")
            case S_IFCHR, S_IFIFO: return try writeInPlace(path: path, body)
            default: throw ShadowError.failed("cannot write \(path): not a regular file, a character device or a pipe")
            }
        }
        let (target, throughDescriptor) = try followingLinks(path)
        // `/dev/stdout` redirected to a file: that file is this process's open output, so the
        // new text goes after what is there rather than a renamed file replacing it.
        if throughDescriptor { return try writeInPlace(path: path, body) }
        let directory = URL(fileURLWithPath: target).deletingLastPathComponent()
        try createDirectory(directory.path)
        let temporary = partialPath(for: target)
        // A file replaced keeps its permission bits (a 0600 manifest stays private), from the
        // moment the temporary file exists; the umask applies to a new one as to fopen's.
        var existing = stat()
        let mode = stat(target, &existing) == 0 ? existing.st_mode & 0o777 : 0o666
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, mode)
        guard descriptor >= 0, let file = fdopen(descriptor, "wb") else {
            let code = errno
            if descriptor >= 0 { close(descriptor) }
            throw ShadowError.failed("cannot write \(path): cannot create a file in \(directory.path) (\(describe(errno: code)))")
        }
        if mode != 0o666 { _ = fchmod(descriptor, mode) }   // exactly, whatever the umask
        do {
            // On disk before the rename: after a crash of the machine, the name then holds the old
            // file or the whole new one, never a renamed file whose data had not been written yet.
            try fill(file, path: path, sync: true, body)
            try moveIntoPlace(temporary, to: target)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
    }

    /// A device, a pipe or an open descriptor (`/dev/stdout`): appended to directly (there is no
    /// partial file to hide, and no file of ours to replace).
    private static func writeInPlace(path: String,
                                     _ body: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        guard let file = fopen(path, "ab") else {
            throw ShadowError.failed("cannot write \(path): \(describe(errno: errno))")
        }
        try fill(file, path: path, sync: false, body)
    }

    /// Hands `body`'s pieces, in order, to `file`, flushes it (with `sync`, to the disk) and closes
    /// it, whatever happens. After the first failed write later pieces are skipped; that failure
    /// is thrown naming `path`. An error of `body` is rethrown.
    private static func fill(_ file: UnsafeMutablePointer<FILE>, path: String, sync: Bool,
                             _ body: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        var writeError: Int32 = 0
        do {
            try body { bytes in
                guard writeError == 0, bytes.count > 0 else { return }
                if fwrite(bytes.baseAddress, 1, bytes.count, file) != bytes.count {
                    writeError = errno == 0 ? EIO : errno
                }
            }
        } catch {
            fclose(file)
            throw error
        }
        if writeError == 0 && fflush(file) != 0 { writeError = errno == 0 ? EIO : errno }
        if writeError == 0 && sync && fsync(fileno(file)) != 0 { writeError = errno == 0 ? EIO : errno }
        let closeError = fclose(file) == 0 ? 0 : errno
        if writeError != 0 || closeError != 0 {
            throw ShadowError.failed("cannot write \(path): \(describe(errno: writeError != 0 ? writeError : closeError))")
        }
    }

    /// The path a chain of symbolic links at `path` ends in (`path` itself when it is no link);
    /// the end may not exist yet (a link to a file still to be written). `throughDescriptor`: a
    /// link of the chain is an open descriptor (`/proc/PID/fd/N`, `/dev/fd/N`).
    static func followingLinks(_ path: String) throws -> (end: String, throughDescriptor: Bool) {
        var current = path
        var throughDescriptor = false
        for _ in 0..<40 {
            var status = stat()
            guard lstat(current, &status) == 0, status.st_mode & S_IFMT == S_IFLNK else { return (current, throughDescriptor) }
            let components = current.split(separator: "/")
            if components.count == 4 && components[0] == "proc" && components[2] == "fd"
                || components.count == 3 && components[0] == "dev" && components[1] == "fd" {
                throughDescriptor = true
            }
            guard let destination = try? FileManager.default.destinationOfSymbolicLink(atPath: current) else {
                throw ShadowError.failed("cannot write \(path): cannot read the symbolic link \(current)")
            }
            current = destination.hasPrefix("/") ? destination
                : URL(fileURLWithPath: current).deletingLastPathComponent().appendingPathComponent(destination).path
        }
        throw ShadowError.failed("cannot write \(path): too many levels of symbolic links")
    }

    /// Throws, naming `option`, when `write` could not write `path` (a directory there, a file in
    /// place of a directory on the way, a directory that cannot be written): checked before a run,
    /// so that its result is not computed only to be lost. Nothing is left behind (a probe file
    /// is created in the directory and removed).
    public static func checkWritable(_ path: String, option: String) throws {
        guard !path.isEmpty else { throw ShadowError.invalidArgument(name: option, reason: "the path is empty") }
        var status = stat()
        if stat(path, &status) == 0 {
            switch status.st_mode & S_IFMT {
            case S_IFREG, S_IFCHR, S_IFIFO: break
            case S_IFDIR: throw ShadowError.invalidArgument(name: option, reason: "\(path) is a directory")
            default: throw ShadowError.invalidArgument(name: option, reason: "\(path) is not a regular file, a character device or a pipe")
            }
            if status.st_mode & S_IFMT != S_IFREG { return }
        }
        // The nearest directory on the way that exists (the path is absolute here: "/" at the
        // latest) must be a directory we may write in.
        let target = (try? followingLinks(path).end) ?? path
        var ancestor = URL(fileURLWithPath: target).deletingLastPathComponent().path
        while stat(ancestor, &status) != 0 && ancestor != "/" {
            ancestor = (ancestor as NSString).deletingLastPathComponent
        }
        guard status.st_mode & S_IFMT == S_IFDIR else {
            throw ShadowError.invalidArgument(name: option, reason: "cannot write \(path): \(ancestor) is a file, not a directory")
        }
        guard access(ancestor, W_OK | X_OK) == 0 else {
            throw ShadowError.invalidArgument(name: option, reason: "cannot write \(path): \(ancestor) is not writable (\(describe(errno: errno)))")
        }
        // access() grants root everything, and some directories (procfs) refuse new files
        // anyway: create one there and remove it.
        let probe = (ancestor as NSString).appendingPathComponent(".shadowllm-probe.\(getpid())")
        let descriptor = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else {
            let code = errno
            if code == EEXIST { return }   // our own probe, left by a crash: the directory takes files
            throw ShadowError.invalidArgument(name: option, reason: "cannot write \(path): cannot create a file in \(ancestor) (\(describe(errno: code)))")
        }
        close(descriptor)
        unlink(probe)
    }

    /// Refuses to write `output` (given with `option`) over one of `inputs`, a file the run reads.
    /// Paths are compared after following links, so `./a`, `b/../a` and a link to `a` count as `a`.
    public static func refuseOverwriting(_ output: String, option: String, inputs: [(option: String, path: String)]) throws {
        let written = canonical(output)
        for input in inputs where !input.path.isEmpty && canonical(input.path) == written {
            throw ShadowError.invalidArgument(name: option, reason: "\(output) would overwrite \(input.option) \(input.path)")
        }
    }

    /// An absolute path with links followed: the file's own when it exists, else its directory's
    /// followed by its name.
    public static func canonical(_ path: String) -> String {
        if let resolved = realpath(path, nil) {
            defer { free(resolved) }
            return String(cString: resolved)
        }
        let url = URL(fileURLWithPath: path)
        guard let parent = realpath(url.deletingLastPathComponent().path, nil) else { return url.standardizedFileURL.path }
        defer { free(parent) }
        return URL(fileURLWithPath: String(cString: parent)).appendingPathComponent(url.lastPathComponent).path
    }

    public static func write(_ text: String, to path: String) throws {
        try write(Data(text.utf8), to: path)
    }

    /// Where this process builds `path` before renaming it into place (`.NAME.PID.partial` beside
    /// it), after removing what killed writers of the same target left there.
    public static func partialPath(for path: String) -> String {
        let url = URL(fileURLWithPath: path), directory = url.deletingLastPathComponent()
        removeStalePartials(of: url.lastPathComponent, in: directory.path)
        return directory.appendingPathComponent(".\(url.lastPathComponent).\(ProcessInfo.processInfo.processIdentifier).partial").path
    }

    /// Renames a finished file or directory over `path` (atomic within one file system), then
    /// flushes the directory holding it, so that after a crash of the machine the new name is
    /// there too, not only the data. That flush is best effort: some file systems refuse fsync on
    /// a directory, and the rename has already happened.
    public static func moveIntoPlace(_ source: String, to path: String) throws {
        guard rename(source, path) == 0 else {
            throw ShadowError.failed("cannot write \(path): \(describe(errno: errno))")
        }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let descriptor = open(directory, O_RDONLY | O_DIRECTORY)
        if descriptor >= 0 {
            _ = fsync(descriptor)
            close(descriptor)
        }
    }

    /// Throws, naming it, when a file stands where a parent directory of `path` would be:
    /// Foundation reports that without its cause.
    public static func requireDirectoryParents(of path: String) throws {
        var isDirectory: ObjCBool = false
        var ancestor = (path as NSString).deletingLastPathComponent
        while !ancestor.isEmpty && ancestor != "/" && !FileManager.default.fileExists(atPath: ancestor, isDirectory: &isDirectory) {
            ancestor = (ancestor as NSString).deletingLastPathComponent
        }
        if !ancestor.isEmpty && ancestor != "/" && !isDirectory.boolValue {
            throw ShadowError.failed("cannot create directory \(path): \(ancestor) is a file, not a directory")
        }
    }

    /// Creates the directory `path` and its missing parents (nothing when it exists). The error
    /// names the directory and the cause: a file in the way, a parent that cannot be created,
    /// no permission.
    public static func createDirectory(_ path: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw ShadowError.failed("cannot create directory \(path): a file of that name exists") }
            return
        }
        try requireDirectoryParents(of: path)
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw ShadowError.failed("cannot create directory \(path): \(describe(error))")
        }
    }

    /// The system's words for an error number ("No such file or directory").
    static func describe(errno code: Int32) -> String {
        code == 0 ? "unknown error" : String(cString: strerror(code))
    }

    /// The POSIX cause of a Foundation file error in words, not its `Error Domain=…` dump.
    public static func describe(_ error: any Error) -> String {
        let nsError = error as NSError
        if let underlying = (nsError.userInfo[NSUnderlyingErrorKey] as? any Error).map({ $0 as NSError }),
           underlying.domain == NSPOSIXErrorDomain {
            return describe(errno: Int32(underlying.code))
        }
        if nsError.domain == NSPOSIXErrorDomain { return describe(errno: Int32(nsError.code)) }
        return nsError.localizedFailureReason ?? nsError.localizedDescription
    }

    /// Temporary files (or merge directories) a killed writer of the same target left behind (`.NAME.PID.partial`):
    /// they are never read, but a resumed run should not leave them to pile up.
    static func removeStalePartials(of name: String, in directory: String) {
        let prefix = ".\(name).", suffix = ".partial"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for entry in entries where entry.hasPrefix(prefix) && entry.hasSuffix(suffix) {
            let pid = entry.dropFirst(prefix.count).dropLast(suffix.count)
            // Another process still writing the same target keeps its file.
            // (kill fails with EPERM for a live process of another user: only ESRCH means gone.)
            guard let id = Int32(pid), id == ProcessInfo.processInfo.processIdentifier || (kill(id, 0) != 0 && errno == ESRCH) else { continue }
            try? FileManager.default.removeItem(atPath: (directory as NSString).appendingPathComponent(entry))
        }
    }
}
